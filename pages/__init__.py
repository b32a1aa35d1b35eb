"""The dashboard's pages (one thin file each) and pages/common.py, their shared helpers."""

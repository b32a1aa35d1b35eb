"""Developer tooling: support for the browser tests, benchmarks and screenshots.

Not part of the app: nothing in pages/, commands/, services/, importers/, db/ or core/ imports it,
and it imports none of them (it starts the app as a subprocess, `streamlit run app.py`).
"""

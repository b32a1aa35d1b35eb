"""Pure computation for ScaleScope: laws, fitting, planner, routing metrics, probes.

Nothing here imports Streamlit or SQLAlchemy (see docs/ARCHITECTURE.md)."""

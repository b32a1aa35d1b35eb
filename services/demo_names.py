"""The names the bundled demo gives its runs, tags and fits: one home, read by services.seed (which
makes them) and by the services that put the demo first (fits, evals), which services.seed imports."""
PROBE_DEMO_TAG = "demo"  # the probe sweep's runs (and its sweep row's tag on the Probes page)
EXAMPLE_TAG = "example"  # every run of the bundled public data
# One dataset tag per bundled public table, besides "example", so the Fits and Evals pages select
# one dataset and never mix the Chinchilla runs with the eval tables' models.
CHINCHILLA_TAG = "chinchilla (Epoch AI)"
OBSSCALING_TAG = "observational scaling (Ruan et al. 2024)"
PYTHIA_TAG = "pythia (EleutherAI)"
EXAMPLE_FIT_NAME = "Chinchilla runs (Hoffmann et al. 2022, via Epoch AI), Besiroglu et al. 2024 settings"
DEMO_FIT_NAME = "demo sweep (bundled, trained by ScaleScope)"
DEMO_SWEEP_ID = "demo"
MIXTURE_SWEEP_ID = "demo-mixture"  # the D-CPT mixture sweep (assets/demo/mixture_*.csv); its tag is sweep=demo-mixture
DCPT_FIT_NAMES = {"dcpt_domain": "demo mixture sweep: domain loss (bundled, trained by ScaleScope)",
                  "dcpt_general": "demo mixture sweep: general loss (bundled, trained by ScaleScope)"}

"""Small-model probes: train tiny transformers on the bundled corpus and measure devices.

- ``devices``: pick cuda > mps > cpu and the dtype that goes with it.
- ``model_configs``: Llama-style dense and Qwen3-MoE configs sized to a parameter target, with
  exact parameter counts.
- ``flops``: 6·N·D and a per-token forward count with attention, checked against FlopCounterMode.
- ``train``: one training run (AdamW, cosine to 10 %, held-out loss per domain).
- ``sweep``: an IsoFLOP grid of runs, returned in the store's run shape.
- ``throughput``: tokens/s, achieved TFLOP/s and MFU of a config on a device.
"""

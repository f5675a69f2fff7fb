"""ssm-bench: a harness that compares State Space Models (Mamba) with Transformers."""

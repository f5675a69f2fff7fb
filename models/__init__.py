"""The in-repo Mamba: `from models.mamba import MambaConfig, MambaLM`."""

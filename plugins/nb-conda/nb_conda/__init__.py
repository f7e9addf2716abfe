"""nb-conda: the nbcore ``conda`` backend (conda prefixes per spec; embedded py-rattler engine or micromamba/mamba/conda)."""
__version__ = "0.2.0"

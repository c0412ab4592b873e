"""mmpipe: frozen encoders once into Parquet shards, lightweight fusion heads many times."""

__version__ = "0.1.0"

"""Benchmarks of bedrock_assets' heavy paths (``python -m bench.run``); see bench/run.py."""

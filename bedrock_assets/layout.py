"""Where every artifact of a pipeline lives under its ``output_uri``."""

from __future__ import annotations

from dataclasses import dataclass

from bedrock_assets.uris import S3Location, parse_s3_uri


@dataclass(frozen=True)
class PipelineLayout:
    root: S3Location

    @classmethod
    def for_uri(cls, output_uri: str) -> PipelineLayout:
        return cls(parse_s3_uri(output_uri, what="output_uri"))

    @property
    def shard_index(self) -> S3Location:
        return self.root.join("canonical", "_shards.json")

    def shard_rows(self, shard: str) -> S3Location:
        """The shard's input rows (canonical copy of the raw dataset, one part per shard)."""
        return self.root.join("canonical", f"{shard}.parquet")

    def shard_lines(self, shard: str) -> S3Location:
        """The shard's request lines as they were cut (its JSONL input, staged: jsonl_shards copies it to
        ``shard_input``), stored with their sha256 (``shards.LINES_DIGEST``)."""
        return self.root.join("canonical", f"{shard}.jsonl")

    def shard_input(self, shard: str) -> S3Location:
        """The Bedrock input file (``{"recordId", "modelInput"}`` lines)."""
        return self.root.join("shards", shard, "input.jsonl")

    def job_output(self, shard: str) -> S3Location:
        """Bedrock's outputDataConfig prefix; Bedrock writes ``<prefix>/<jobId>/...`` under it."""
        return self.root.join("jobs", shard)

    def outputs(self, shard: str) -> S3Location:
        return self.root.join("outputs", f"{shard}.parquet")

    def merged(self, shard: str) -> S3Location:
        return self.root.join("merged", f"{shard}.parquet")

    @property
    def retry_state(self) -> S3Location:
        """The planned retry rounds and their shards."""
        return self.root.join("retries", "_rounds.json")

    @property
    def cache_segments(self) -> S3Location:
        """The record cache: one Parquet segment per attempt that answered records (``record_cache``)."""
        return self.root.join("cache", "segments")

    @property
    def cutoff(self) -> S3Location:
        """When the pipeline passed its deadline's batch cutoff (written once, when it does)."""
        return self.root.join("deadline", "_cutoff.json")

    @property
    def merged_dataset(self) -> S3Location:
        return self.root.join("merged_dataset", "data.parquet")

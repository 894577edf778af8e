"""The work of each node of a pipeline's asset graph, one module per asset (the completion sensor's too).

raw_dataset -> jsonl_shards -> batch_jobs -(job_completion)-> batch_job_outputs -> merged_results -> merged_dataset
"""

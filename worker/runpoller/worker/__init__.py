"""The worker process: composition root, run driver, intake, housekeeping, probes, arq glue."""

"""Client data: the CSV schema and reader, the append-only store of batches, ingestion."""

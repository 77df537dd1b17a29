"""The LLM stages as data (stages), their typed configs (config), stage data and batches (data), the
runner (one skeleton for every stage), online perception and distributed launch."""

"""sim: a self-contained music world and user simulator that speaks botify's API.

world (generator) → catalog (files in, nearest neighbours) → user_model (listening rules)
→ env (Gymnasium-style) → policies / remote_agent / console_agent → episodes → run (CLI);
bulk_logs writes event logs straight from the same model.
"""

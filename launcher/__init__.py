"""How a job gets run: ``launch`` (the file spark-submit runs in the driver), ``submit`` (renders the
spark-submit command behind ``spark-submit.sh``) and ``cluster_cache`` (what a cluster submit ships once).

None of these is a job: they sit above ``jobs/`` (they read its registry) and below ``pipeline/``.
"""

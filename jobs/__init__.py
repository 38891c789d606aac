"""spark-submit jobs: one module per job, each with ``main(argv)``.

``JOBS`` is the registry spark-submit.sh and the launcher (``launcher/``) consult; add
a job here and it becomes submittable. One module here is not a job: ``multidae_training``, the
rank function ``train_multidae`` ships to its TorchDistributor ranks.
"""
JOBS = {
    "cluster_check": "jobs.cluster_check",
    "stage_events": "jobs.stage_events",
    "extract_interactions": "jobs.extract_interactions",
    "train_multidae": "jobs.train_multidae",
    "tune_multidae": "jobs.tune_multidae",
    "infer_recommendations": "jobs.infer_recommendations",
    "train_als": "jobs.train_als",
    "evaluate_offline": "jobs.evaluate_offline",
    "analyze_ab": "jobs.analyze_ab",
    # The simulator's Spark entry point (training traffic at volume) lives in sim/ (docs/design.md).
    "simulate_logs": "sim.simulate_logs",
}

from pathlib import Path

from setuptools import setup

REQUIREMENTS = [
    line.strip()
    for line in Path(__file__).with_name("requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#") and not line.startswith(("pytest", "hypothesis", "venv-pack"))
]

setup(
    name="botify-pipeline",
    version="0.1.0",
    description="Spark-native music recommender pipeline: jobs, the botify service and the sim user simulator",
    python_requires=">=3.11,<3.12",
    packages=["common", "jobs", "launcher", "botify", "sim", "pipeline"],
    install_requires=REQUIREMENTS,
    extras_require={"test": ["pytest==8.3.4", "pytest-timeout==2.3.1", "hypothesis==6.170.17"],
                    "pack": ["venv-pack==0.2.0"]},
    entry_points={
        "console_scripts": [
            "botify-job=launcher.launch:main",
            "botify-demo=pipeline.demo:main",
            "botify-daily=pipeline.daily:main",
            "botify-upload=pipeline.upload_logs:main",
            "botify-minicluster=pipeline.minicluster:main",
            "botify=botify.cli:main",
            "botify-sim=sim.__main__:main",
        ]
    },
)

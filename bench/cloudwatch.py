#!/usr/bin/env python3
"""CloudWatch's metric store (issue 16): PutMetricData datapoints/s (requests of 1,000, each
fsynced) and GetMetricData over 24 hours of 1-minute data for 100 series (target <= 50 ms).
Runs `crates/gantry-cloudwatch/examples/cw_bench.rs` in release: the operations on their JSON
form, without HTTP (the front door's cost per request is in the API benchmark).

    python3 bench/cloudwatch.py
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    r = subprocess.run(["cargo", "run", "--quiet", "--release", "-p", "gantry-cloudwatch", "--example", "cw_bench"],
                       cwd=ROOT)
    sys.exit(r.returncode)

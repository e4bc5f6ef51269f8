"""Step fingerprints and the recorded environment: what tells two machines' runs apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from qrewrite.environment import current_environment
from qrewrite.tables import table_fingerprint


def test_fingerprint_content_ignores_row_order_and_order_does_not() -> None:
    df = pd.DataFrame(
        {"query": ["a", "b", "c"], "cvr": [0.1, 0.2, 0.3], "bought": [["p1"], [], ["p2", "p3"]]}
    )
    shuffled = df.iloc[[2, 0, 1]].reset_index(drop=True)
    a, b = table_fingerprint(df), table_fingerprint(shuffled)
    assert a["rows"] == 3 and a["content"] == b["content"] and a["order"] != b["order"]
    assert table_fingerprint(pa.Table.from_pandas(df)) == a  # arrow and pandas alike


def test_fingerprint_sees_one_ulp_and_one_list_item() -> None:
    df = pd.DataFrame({"x": [0.1, 0.2], "ids": [np.array(["p1"]), np.array(["p2"])]})
    ulp = df.assign(x=[0.1, np.nextafter(0.2, 1.0)])
    item = df.assign(ids=[np.array(["p1"]), np.array(["p2", "p3"])])
    base = table_fingerprint(df)["content"]
    assert table_fingerprint(ulp)["content"] != base
    assert table_fingerprint(item)["content"] != base
    assert table_fingerprint(df.rename(columns={"x": "y"}))["content"] != base


def test_environment_names_the_cpu_threads_and_packages() -> None:
    import torch

    env = current_environment()
    assert env.cpu_model and env.cpus >= 1
    assert env.torch_threads == torch.get_num_threads()
    assert torch.__version__.startswith(env.packages["torch"])
    tags = env.tags()
    assert tags["env.pkg.transformers"] and tags["env.cpu_model"] == env.cpu_model
    assert all(isinstance(v, str) and len(v) < 5000 for v in tags.values())
    assert env.cpu_model in env.summary()

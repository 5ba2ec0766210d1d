import json
import subprocess
import sys

from infogan import cli

from .conftest import ROOT, shared_dataset


def test_continuous_codes_bench_writes_real_relation_and_code_effects(tiny_project):
    """bench/continuous_codes.py on real MNIST files and a real (tiny) checkpoint."""
    cli.prepare()
    cli.train(experiment="mnist", runs_dir="runs")
    out = tiny_project / "cc.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench/continuous_codes.py"), "--data",
                           str(shared_dataset("mnist")), "--checkpoint", "runs/mnist/checkpoint.pt",
                           "--real-images", "2000", "--ideal-images", "20", "--rows", "4", "--steps", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    real = result["real"]
    assert real["images"] == 2000 and sorted(real["within_class"]["per_class"]) == [str(k) for k in range(10)]
    assert -1 <= real["overall"]["r"] <= 1
    ideal = result["ideal_codes"]
    assert ideal["images"] == 20 and abs(ideal["rotation"]["rotation"]) > 0.95
    assert abs(ideal["shear"]["skew"]) > 0.95 and set(ideal["shear"]) == {"skew", "rotation", "thickness", "width"}
    assert abs(ideal["stretch"]["width"]) > abs(ideal["stretch"]["rotation"])
    (effects,) = result["checkpoints"]
    assert effects["epoch"] == 2 and set(effects["codes"]) == {"cont0", "cont1", "ideal_warps"}
    warps = effects["codes"]["ideal_warps"]
    assert set(warps["shear"]) == {"q_code0", "q_code1"} and warps["stretch_per_unit"] == 0.25
    for key in ("shear", "log_width", "log_height", "log_ink", "q_code0", "q_code1"):
        assert isinstance(effects["codes"]["cont1"][key], float)

    # The same checkpoint through bench/label_free_vs_accuracy.py: Q's accuracy as training scored
    # it (same BatchNorm calibration), the label-free figure a share of H(c), no correlation of one.
    out = tiny_project / "lfa.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench/label_free_vs_accuracy.py"), "--out", str(out),
                           "runs/mnist/checkpoint.pt"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    (row,) = result["checkpoints"]
    last_epoch = json.loads((tiny_project / "runs/mnist/logs/epochs.json").read_text())[-1]
    assert row["epoch"] == 2 and row["accuracy"] == last_epoch["accuracy"]
    assert 0 <= row["paired_information_fraction"] <= 1 and result["spearman_accuracy"] is None

    # And its run folder through bench/seed_table.py: the accuracies training logged, per epoch.
    proc = subprocess.run([sys.executable, str(ROOT / "bench/seed_table.py"), "--out", str(tiny_project / "st.json"),
                           "runs/mnist"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = json.loads((tiny_project / "st.json").read_text())
    assert table["seeds"][0]["accuracy"]["2"] == last_epoch["accuracy"] == table["per_epoch"]["2"]["median"]


def test_throughput_bench_times_every_step_beside_the_matmul_peak(tmp_path):
    """bench/train_throughput.py (`make bench`), seconds-long: every experiment's step, the
    paper's plain step and the baseline, with FLOPs per image and the peak of the same run."""
    out = tmp_path / "throughput.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench/train_throughput.py"), "--data",
                           str(shared_dataset("mnist")), "--params", str(ROOT / "params.yaml"), "--steps", "2",
                           "--warmup", "1", "--batch", "32", "--prepared", str(tmp_path / "prepared"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["steps"]) == {"mnist", "fashion_mnist", "paper_plain_step"}
    assert result["steps"]["paper_plain_step"]["terms"] == {}
    assert "digit_roles" in result["steps"]["mnist"]["terms"]
    for step in result["steps"].values():
        assert step["images_per_s"] > 0 and step["mflop_per_training_image"] > 0 and 0 < step["fraction_of_peak"] < 1
    assert result["matmul_peak_gflops_2048"] > 0 and result["baseline_images_per_s"] > 0 and result["device_name"]


def test_seed_table_gives_median_min_best_and_time_to_each_target(tmp_path):
    """bench/seed_table.py over three seeds' epoch records, one of which stopped an epoch early."""
    def record(epoch, accuracy):
        return {"epoch": epoch, "accuracy": accuracy, "images_seen": 60000 * epoch, "elapsed_s": 100.0 * epoch,
                "matmul_peak_gflops": 90.0, "device_name": "cpu"}
    curves = {"s0": [0.80, 0.96, 0.975], "s1": [0.76, 0.81, 0.93], "s2": [0.82, 0.951]}
    for name, curve in curves.items():
        (tmp_path / f"{name}.json").write_text(json.dumps([record(e + 1, a) for e, a in enumerate(curve)]))
    out = tmp_path / "table.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench/seed_table.py"), "--target", "0.95", "--target", "0.97",
                           "--out", str(out)] + [str(tmp_path / f"{n}.json") for n in curves],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = json.loads(out.read_text())
    assert table["per_epoch"]["2"] == {"median": 0.951, "min": 0.81, "mean": 0.907, "max": 0.96, "seeds": 3}
    assert set(table["per_epoch"]) == {"1", "2"} and table["last_common_epoch"] == 2
    assert table["best_seed_at_last_common_epoch"].endswith("s0.json")
    s0, s1, s2 = table["seeds"]
    assert s0["time_to"]["0.95"] == {"target": 0.95, "reached": True, "epoch": 2, "images_seen": 120000,
                                     "elapsed_s": 200.0, "matmul_peak_gflops": 90.0, "device_name": "cpu"}
    assert s0["time_to"]["0.97"]["epoch"] == 3 and not s1["time_to"]["0.95"]["reached"]
    assert s2["time_to"]["0.95"]["epoch"] == 2 and "| **median** | 80.0 | 95.1 | - |" in proc.stdout

    (tmp_path / "bad.json").write_text(json.dumps([{"epoch": 1}]))
    proc = subprocess.run([sys.executable, str(ROOT / "bench/seed_table.py"), "--out", str(out), str(tmp_path / "bad.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "no epoch has an accuracy" in proc.stderr

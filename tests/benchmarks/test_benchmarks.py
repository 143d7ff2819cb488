"""The benchmark scripts: the suite's record / skip / failure logic on a fake runner, and the report's numbers."""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


suite_mod = _load("suite")
report_mod = _load("report")
#: report.py's v2 parts (search storage, dev-curve plots, regime study) off: a test names the ones it checks
REPORT_OFF = ["--search-db", "", "--curves-dir", "", "--regime-results", ""]


class FakeRunner:
    """Writes a model folder like fsdkit does, without training; fails for the methods in ``fail``."""

    def __init__(self, fail=()):
        self.fail = set(fail)
        self.calls: list[tuple[str, str, int, bool]] = []
        self.memories = 0

    def _run(self, settings, method):
        self.calls.append((settings["task"], method, settings["seed"], settings["resume"]))
        if method in self.fail:
            raise RuntimeError(f"{method} exploded")
        out = Path(settings["output_dir"])
        (out / "checkpoints" / "checkpoint-10").mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")
        score = 0.8 + 0.01 * settings["seed"]
        return {
            "metrics": {"validation": {"accuracy": score, "f1": score + 0.05}},
            "main_metric": "f1",
            "config": {"seed": settings["seed"]},
            "train_samples_per_second": 10.0,
        }

    def finetune(self, settings):
        return self._run(settings, "teacher")

    def distill(self, settings):
        if suite_mod.reads_memory(settings["method"]):
            assert Path(settings["memory"]).name == "memory"
        return self._run(settings, settings["method"])

    def majority(self, settings):
        assert settings["task"] == "mrpc" and settings["data_dir"] == "glue"
        return {"metrics": {"validation": {"accuracy": 0.68, "f1": 0.81}}, "main_metric": "f1"}

    def predict(self, settings):
        assert settings["split"] == "test" and (Path(settings["model"]) / "config.json").is_file()
        Path(settings["output"]).parent.mkdir(parents=True, exist_ok=True)
        Path(settings["output"]).write_text("index\tprediction\n0\t1\n")
        return {"n_examples": 1}

    def build_memory(self, settings):
        from fsdkit.artifacts import build_lock

        with build_lock(settings["output_dir"]):  # as fsdkit.build_memory does, inside the suite's claim of it
            self.memories += 1
            Path(settings["output_dir"]).mkdir(parents=True)
            built = {key: settings.get(key) for key in suite_mod.MEMORY_KEYS}  # as fsdkit's memory.json records them
            (Path(settings["output_dir"]) / "memory.json").write_text(json.dumps(built))


def task_suite(tmp_path, task, recipe):
    """A one-task suite of ``recipe`` in ``tmp_path`` (Suite.for_task: no student cells, no test predictions)."""
    return suite_mod.Suite.for_task(task, recipe, glue_dir="glue", work_dir=tmp_path, results=tmp_path / "r.jsonl")


def make_suite(tmp_path, runner, methods=("vkd", "fsd", "broken"), seeds=(1, 2), glue_dir="glue"):
    return suite_mod.Suite(
        glue_dir=str(glue_dir),
        tasks=["mrpc"],
        methods=list(methods),
        seeds=list(seeds),
        results=tmp_path / "results.jsonl",
        work_dir=tmp_path / "work",
        recipe=suite_mod.load_recipe(suite_mod.V1_RECIPE),
        runner=runner,
        stop_file=tmp_path / "STOP",
        predictions_dir=tmp_path / "predictions",
    )


def test_suite_records_every_run_and_goes_on_after_a_failure(tmp_path):
    runner = FakeRunner(fail={"broken"})
    counts = make_suite(tmp_path, runner).run()
    assert counts == {"ok": 6, "failed": 2, "skipped": 0, "blocked": 0, "adopted": 0, "busy": 0}
    records = suite_mod.read_records(tmp_path / "results.jsonl")
    assert [(r["method"], r["seed"], r["status"]) for r in records] == [
        ("teacher", 42, "ok"),
        ("majority", 0, "ok"),
        ("vkd", 1, "ok"),
        ("fsd", 1, "ok"),
        ("broken", 1, "failed"),
        ("vkd", 2, "ok"),
        ("fsd", 2, "ok"),
        ("broken", 2, "failed"),
    ]
    for r in records:
        for key in (
            "task",
            "method",
            "seed",
            "status",
            "metrics",
            "error",
            "config",
            "wall_time",
            "train_samples_per_second",
            "fsdkit_version",
            "git_commit",
            "host",
            "settings_hash",
        ):
            assert key in r
        assert r["task"] == "mrpc"
    assert records[1]["metrics"] == {"accuracy": 0.68, "f1": 0.81} and records[1]["output_dir"] is None
    ok = records[2]
    assert ok["metrics"] == {"accuracy": pytest.approx(0.81), "f1": pytest.approx(0.86)}  # flat metric names
    assert ok["settings"]["learning_rate"] == 1e-4 and "output_dir" not in ok["settings"]
    assert ok["test_predictions"] is None  # no GLUE folder "glue" here: nothing to predict
    assert "RuntimeError: broken exploded" in records[4]["error"]
    assert runner.memories == 1  # one teacher memory per task, shared by the fsd runs
    work = tmp_path / "work" / "mrpc"
    # checkpoints deleted; model folders kept for the teacher and seed 1 only
    assert (work / "teacher" / "config.json").is_file() and not (work / "teacher" / "checkpoints").exists()
    assert (work / "vkd" / "seed1" / "config.json").is_file() and not (work / "vkd" / "seed1" / "checkpoints").exists()
    assert not (work / "vkd" / "seed2").exists()


def test_every_finished_run_predicts_the_test_split_where_there_is_one(tmp_path):
    glue = tmp_path / "glue"
    (glue / "MRPC").mkdir(parents=True)
    (glue / "MRPC" / "test.tsv").write_text("index\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
    runner = FakeRunner(fail={"broken"})
    runner.majority = lambda settings: {"metrics": {"validation": {"f1": 0.81}}, "main_metric": "f1"}
    make_suite(tmp_path, runner, glue_dir=glue).run()
    records = {(r["method"], r["seed"]): r for r in suite_mod.read_records(tmp_path / "results.jsonl")}
    assert records[("vkd", 2)]["test_predictions"] == "mrpc/vkd/seed2.tsv"
    assert records[("teacher", 42)]["test_predictions"] == "mrpc/teacher/seed42.tsv"
    assert "test_predictions" not in records[("majority", 0)] and "test_predictions" not in records[("broken", 1)]
    written = sorted(str(p.relative_to(tmp_path / "predictions")) for p in (tmp_path / "predictions").rglob("*.tsv"))
    assert written == [
        "mrpc/fsd/seed1.tsv",
        "mrpc/fsd/seed2.tsv",
        "mrpc/teacher/seed42.tsv",
        "mrpc/vkd/seed1.tsv",
        "mrpc/vkd/seed2.tsv",
    ]


def test_suite_skips_recorded_runs_and_retries_failures(tmp_path):
    make_suite(tmp_path, FakeRunner(fail={"broken"})).run()
    runner = FakeRunner()
    counts = make_suite(tmp_path, runner).run()
    assert counts == {"ok": 2, "failed": 0, "skipped": 6, "blocked": 0, "adopted": 0, "busy": 0}
    assert [(c[1], c[2]) for c in runner.calls] == [("broken", 1), ("broken", 2)]
    # a changed setting is a different run: not skipped
    suite = make_suite(tmp_path, FakeRunner(), methods=("vkd",), seeds=(1,))
    suite.overrides = {"epochs": 1}
    assert suite.run()["ok"] == 2  # the teacher (epochs differ) and vkd; the majority baseline has no epochs
    # a student trained from another teacher recipe is a different run too
    retaught = make_suite(tmp_path, FakeRunner(), methods=("fsd",), seeds=(1,))
    retaught.recipe = {**retaught.recipe, "teacher": {**retaught.recipe["teacher"], "learning_rate": 3e-5}}
    assert retaught.run()["ok"] == 2


def test_suite_resumes_an_interrupted_run_and_honours_the_stop_file(tmp_path):
    suite = make_suite(tmp_path, FakeRunner(), methods=("vkd",), seeds=(1,))
    (suite.run_dir("mrpc", "vkd", 1) / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    suite.run()
    assert suite.runner.calls[-1] == ("mrpc", "vkd", 1, True)
    (tmp_path / "STOP").write_text("")
    stopped = make_suite(tmp_path, FakeRunner(), methods=("vkd",), seeds=(2,))
    assert stopped.run() == {"ok": 0, "failed": 0, "skipped": 2, "blocked": 0, "adopted": 0, "busy": 0}


def test_suite_workers_share_the_jobs_of_one_command(tmp_path):
    from filelock import FileLock

    make_suite(tmp_path, FakeRunner(), methods=(), seeds=()).run()  # the teacher, done once
    suite = make_suite(tmp_path, FakeRunner(), methods=("vkd", "fsd"), seeds=(1,))
    other = FileLock(str(suite.run_dir("mrpc", "fsd", 1)) + ".lock")  # another worker is training fsd / seed 1
    other.acquire()
    try:
        assert suite.run() == {"ok": 1, "failed": 0, "skipped": 2, "blocked": 0, "adopted": 0, "busy": 1}
        assert [(c[1], c[2]) for c in suite.runner.calls] == [("vkd", 1)]
        # the other worker records its run, then releases the job: no later run repeats it
        finished = suite.run_one("mrpc", "fsd", 1, suite.student_settings("mrpc", "fsd", 1))
        assert finished["status"] == "ok"
    finally:
        other.release()
    late = make_suite(tmp_path, FakeRunner(), methods=("vkd", "fsd"), seeds=(1,))
    assert late.run()["skipped"] == 4 and late.runner.calls == []
    # the memory is built once, whichever worker asks first; the others wait for it, then read it
    assert late.ensure_memory("mrpc") == suite.ensure_memory("mrpc") and late.runner.memories == 0
    # a memory built with another K than the recipe's is built again, not trained from
    late.recipe["memory"] = {**late.recipe["memory"], "n_clusters": 7}
    late.ensure_memory("mrpc")
    assert late.runner.memories == 1
    assert json.loads((late.memory_dir("mrpc") / "memory.json").read_text())["n_clusters"] == 7


def test_failed_teacher_blocks_the_task_but_not_the_majority_baseline(tmp_path):
    counts = make_suite(tmp_path, FakeRunner(fail={"teacher"}), methods=("vkd",), seeds=(1, 2)).run()
    assert counts == {"ok": 1, "failed": 1, "skipped": 0, "blocked": 2, "adopted": 0, "busy": 0}


def test_suite_adopts_the_tuning_run_of_its_own_weights(tmp_path):
    """tune.py's run of the recipe's weight is the suite's seed-1 run: adopted, not repeated; other candidates
    (other settings hash) are not."""
    tuning = make_suite(tmp_path, FakeRunner(), methods=(), seeds=())
    tuning.results, tuning.keep_seed = tmp_path / "tuning.jsonl", 1
    tuning.run()  # the teacher, recorded in the tuning file here
    own = tuning.recipe["methods"]["pkd"]
    for i, candidate in enumerate([{"beta_pkd": 33.3}, own]):
        settings = {
            **tuning.student_settings("mrpc", "pkd", 1),
            **candidate,
            "output_dir": str(tmp_path / "work" / "mrpc" / "tuning" / "pkd" / f"candidate{i}"),
        }
        tuning.run_one("mrpc", "pkd", 1, settings, extra={"candidate": candidate, "tuning": True})
    runner = FakeRunner()
    suite = make_suite(tmp_path, runner, methods=("pkd",), seeds=(1, 2))
    suite.tuning_results = tmp_path / "tuning.jsonl"
    assert suite.run() == {"ok": 3, "failed": 0, "skipped": 0, "blocked": 0, "adopted": 1, "busy": 0}
    assert [(c[1], c[2]) for c in runner.calls] == [("teacher", 42), ("pkd", 2)]
    pkd1 = [r for r in suite_mod.read_records(suite.results) if r["method"] == "pkd" and r["seed"] == 1]
    assert len(pkd1) == 1 and pkd1[0]["adopted_from"].endswith("tuning.jsonl") and "candidate" not in pkd1[0]
    assert pkd1[0]["settings"]["beta_pkd"] == own["beta_pkd"]
    assert Path(pkd1[0]["output_dir"]).name == "candidate1" and (Path(pkd1[0]["output_dir"]) / "config.json").is_file()
    assert suite.run() == {"ok": 0, "failed": 0, "skipped": 4, "blocked": 0, "adopted": 0, "busy": 0}


def test_suite_adopts_a_teacher_fine_tuned_with_the_same_settings_elsewhere(tmp_path):
    """A teacher of another results file (the curves') with this suite's teacher settings is copied in, not fine-tuned
    again; one with other settings is not taken."""
    curves = make_suite(tmp_path / "curves", FakeRunner(), methods=(), seeds=())
    curves.run()
    teacher = [r for r in suite_mod.read_records(curves.results) if r["method"] == "teacher"][0]
    (Path(teacher["output_dir"]) / "model.safetensors").write_text("weights")
    other = tmp_path / "other.jsonl"
    suite_mod.append_record(other, {**teacher, "settings_hash": "something-else"})
    for source, adopted in ((other, 0), (curves.results, 1)):
        runner = FakeRunner()
        suite = make_suite(tmp_path / f"v2-{adopted}", runner, methods=("vkd",), seeds=(1,))
        suite.teacher_results = source
        assert suite.run()["adopted"] == adopted
        assert [c[1] for c in runner.calls] == (["vkd"] if adopted else ["teacher", "vkd"])
    records = suite_mod.read_records(suite.results)
    assert records[0]["adopted_from"] == str(curves.results) and records[0]["metrics"] == teacher["metrics"]
    assert (suite.teacher_dir("mrpc") / "model.safetensors").read_text() == "weights"
    assert not suite.teacher_dir("mrpc").with_name("teacher.partial").exists()
    assert suite.run()["skipped"] == 3  # recorded: not adopted twice


def test_every_run_records_the_weights_of_the_teacher_it_distilled_from(tmp_path):
    """A teacher fine-tuned again (a new machine: other weights) gets another fingerprint; each student run records
    the fingerprint of the teacher it distilled from, the teacher run its own, and the report counts the student runs
    of each fine-tuning (records before fingerprints: the teacher recorded last before them)."""
    runner = FakeRunner()
    real_run = runner._run

    def with_weights(settings, method):  # a model folder with weights, as fsdkit writes it
        result = real_run(settings, method)
        (Path(settings["output_dir"]) / "model.safetensors").write_text(f"weights of {method}")
        return result

    runner._run = with_weights
    suite = make_suite(tmp_path, runner, methods=("vkd",), seeds=(1,))
    suite.run()
    teacher, majority, student = suite_mod.read_records(suite.results)
    fingerprint = suite_mod.teacher_fingerprint(suite.teacher_dir("mrpc"))
    assert fingerprint == hashlib.sha256(b"weights of teacher").hexdigest()[:12]
    assert teacher["teacher_fingerprint"] == student["teacher_fingerprint"] == fingerprint
    assert "teacher_fingerprint" not in majority and teacher["host"]["cpu_model"]
    assert suite_mod.teacher_fingerprint(tmp_path / "nowhere") is None
    # history: an old teacher and two students without fingerprints, then this suite's teacher and a student, the
    # same teacher adopted again (one fine-tuning) and another student
    old_teacher = {**teacher, "teacher_fingerprint": None}
    old_student = {**student, "teacher_fingerprint": None}
    history = [old_teacher, old_student, old_student, teacher, student, {**teacher}, student]
    runs = report_mod.teacher_finetunings(history)["mrpc"]
    assert [(r["record"].get("teacher_fingerprint"), r["students"]) for r in runs] == [(None, 2), (fingerprint, 2)]


def test_a_recipe_row_may_combine_a_preset_with_extra_terms(tmp_path):
    """A ``methods`` row with ``preset: METHOD`` runs that fsdkit method with the row's settings (here FSDI plus the
    MiniLM attention term of ``losses``), recorded under the row's name; fsd-procrustes reads the shared memory."""
    search_mod = _load("search")
    runner = FakeRunner()
    suite = make_suite(tmp_path, runner, methods=("fsdi-minilm", "fsd-procrustes"), seeds=(1,))
    suite.recipe = suite_mod.load_recipe(suite_mod.HERE / "recipe-v2.yaml")
    settings = suite.student_settings("mrpc", "fsdi-minilm", 1)
    assert settings["method"] == "fsdi" and settings["losses"] == [{"name": "minilm", "weight": 1.0}]
    assert suite.run()["ok"] == 4  # teacher, majority and the two rows
    assert [c[1] for c in runner.calls] == ["teacher", "fsdi", "fsd-procrustes"] and runner.memories == 1
    assert [r["method"] for r in suite_mod.read_records(suite.results)][2:] == ["fsdi-minilm", "fsd-procrustes"]
    spec = search_mod.sweep_spec(suite, "mrpc", "fsdi-minilm")
    assert spec["base"]["method"] == "fsdi" and set(spec["space"]) == {
        "learning_rate",
        "alpha",
        "temperature",
        "lambda_intra",
    }
    from fsdkit.sweep import check_space

    check_space("distill", spec["base"], spec["space"])


def _rec(task, method, seed, metrics, status="ok", **extra):
    """A results line; by default run with v1's recipe's settings (its settings hash: the tests that read these
    report with ``--recipe recipe.yaml``, whose weight search they exercise)."""
    record = {"task": task, "method": method, "seed": seed, "status": status, "metrics": metrics, **extra}
    v1 = suite_mod.Suite(glue_dir="", tasks=[], methods=[], seeds=[], recipe=suite_mod.load_recipe(suite_mod.V1_RECIPE))
    record.setdefault("settings_hash", v1.recipe_hash(record))
    return record


def report_of(tmp_path, records, *extra, recipe=suite_mod.V1_RECIPE, tuning=None, results="results.jsonl"):
    """report.py's RESULTS.md of ``records`` (written to ``tmp_path / results``) under ``recipe``, v2's optional parts
    off unless ``extra`` flags turn them on; returns its path."""
    path = tmp_path / results
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "RESULTS.md"
    report_mod.main(
        [
            "--results",
            str(path),
            "--recipe",
            str(recipe),
            "--output",
            str(out),
            "--tuning",
            str(tuning or tmp_path / "none.jsonl"),
            "--analysis-dir",
            str(tmp_path / "analysis"),
            *REPORT_OFF,
            *extra,
        ]
    )
    return out


def test_report_shows_only_the_runs_of_the_current_recipe(tmp_path):
    """A run whose settings hash is not the one the recipe gives its job now (an earlier recipe's) is history:
    not in the tables, counted under Provenance; a weight-search run of an earlier recipe does not compete."""
    lines = [
        _rec("mrpc", "teacher", 42, {"accuracy": 0.85, "f1": 0.90}),
        _rec("mrpc", "vkd", 1, {"accuracy": 0.70, "f1": 0.80}),
        _rec("mrpc", "vkd", 2, {"accuracy": 0.99, "f1": 0.99}, settings_hash="0123456789ab"),
        _rec("mrpc", "pkd", 1, {"accuracy": 0.71, "f1": 0.81}),
    ]
    tuning = tmp_path / "tuning.jsonl"
    grid = suite_mod.load_recipe(suite_mod.V1_RECIPE)["tuning"]["grid"]["pkd"]
    tuned = [_rec("mrpc", "pkd", 1, {"accuracy": 0.7, "f1": 0.8 + 0.01 * i}, candidate=c) for i, c in enumerate(grid)]
    tuned.append(_rec("mrpc", "pkd", 1, {"accuracy": 0.9, "f1": 0.95}, candidate=grid[0], settings_hash="0123456789ab"))
    tuning.write_text("".join(json.dumps(r) + "\n" for r in tuned))
    text = report_of(tmp_path, lines, tuning=tuning).read_text()
    assert "| VKD | 70.00 [n=1] | 80.00 [n=1] |" in text  # the seed-2 run of an earlier recipe is not averaged in
    assert "- not shown: 1 finished runs of an earlier recipe" in text and "VKD on mrpc × 1" in text
    search = text.split("## Weight search")[1].split("##")[0]
    assert "95.00" not in search and search.count("| PKD |") == 3
    assert f"| PKD | {json.dumps(grid[2])} | Acc 70.00, F1 82.00 | **best** |" in search


def test_report_v2_seeds_per_task_curves_search_and_predictions(tmp_path):
    """recipe-v2: 5 expected seeds on MRPC, the dev curves plotted per task (selection metric: MRPC accuracy), the
    equal-budget search's studies read from their Optuna storage, test predictions counted in the coverage."""
    import optuna

    recipe_path = suite_mod.HERE / "recipe-v2.yaml"
    v2 = suite_mod.Suite(glue_dir="", tasks=[], methods=[], seeds=[], recipe=suite_mod.load_recipe(recipe_path))

    def rec(task, method, seed, accuracy, **extra):
        curve = [{"epoch": e, "eval_accuracy": accuracy - 0.05 * (3 - e), "eval_f1": accuracy + 0.1} for e in (1, 2, 3)]
        record = {
            "task": task,
            "method": method,
            "seed": seed,
            "status": "ok",
            "curve": curve,
            "metrics": {"accuracy": accuracy, "f1": accuracy + 0.1},
            **extra,
        }
        return {**record, "settings_hash": v2.recipe_hash(record)}

    lines = [rec("mrpc", "teacher", 42, 0.80)]
    lines += [rec("mrpc", "vkd", s, 0.70 + 0.01 * s, test_predictions=f"mrpc/vkd/seed{s}.tsv") for s in range(1, 6)]
    lines += [rec("mrpc", "fsd", 1, 0.75, test_predictions="mrpc/fsd/seed1.tsv")]
    lines += [rec("mrpc", "fsdi", s, 0.74, test_predictions=f"mrpc/fsdi/seed{s}.tsv") for s in (1, 2)]
    lines += [rec("mrpc", "fsdi-minilm", s, 0.76 + 0.01 * s) for s in (1, 2)]
    lines += [rec("rte", "teacher", 42, 0.60), rec("rte", "vkd", 1, 0.55)]  # a task outside recipe-v2's table
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    study = optuna.create_study(study_name="mrpc-vkd", storage=storage, direction="maximize")
    study.set_user_attr("metric", "holdout.accuracy")
    space = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)}
    for lr, value in ((1e-4, 0.75), (3e-4, 0.72)):
        study.add_trial(optuna.trial.create_trial(params={"learning_rate": lr}, distributions=space, value=value))
    extra = ["--search-db", storage, "--curves-dir", str(tmp_path / "curves")]
    out = report_of(tmp_path, lines, *extra, recipe=recipe_path, results="v2.jsonl")
    text = out.read_text()
    assert text.startswith("# fsdkit quality benchmark v2")
    assert "| VKD | 73.00 (1.58) | 83.00 (1.58) |" in text  # five seeds: the expected number, unmarked
    assert "| FSD | 75.00 [n=1] | 85.00 [n=1] |" in text
    assert (tmp_path / "curves" / "mrpc.png").is_file() and "[MRPC](curves/mrpc.png)" in text
    assert "| MRPC | VKD | 2 of 6 | Acc 75.00 | learning_rate=0.0001 |" in text
    assert "| MRPC | FSD | 0 of 6 | – | – |" in text and "## Weight search" not in text
    assert "| core table | 4 × 7 × 3/5 | 6 of 112 | 6 | 1 of 4 |" in text
    assert "| FSDI + MiniLM | 4 × 1 × 3/5 | 2 of 16 | 0 | 1 of 4 |" in text  # run like the core methods
    # and tested against the best baseline like FSD (VKD, 5 seeds at F1 83.00 on average, against 87.50)
    assert "| mrpc | FSDI + MiniLM | F1 | 87.50 (n=2) | VKD | 83.00 (n=5) | greater |" in text
    # the ablations expect their own number of seeds (recipe-v2: 3, where MRPC's core cells expect 5)
    assert "| FSD ablations | 4 × 4 × 3 | 2 of 48 | 2 | 1 of 4 |" in text
    assert "| FSDI | 84.00 (0.00) [n=2] |" in text  # MRPC F1, the main metric; 2 of the 3 expected seeds: marked
    # parts outside the recipe's table: shown when they have runs (RTE), left out when they have none
    assert "| RTE | 1 × 7 × 3 | 1 of 21 | 0 | 1 of 1 |" in text
    assert "| Internal-SID |" not in text and "| SST-2 |" not in text and "| WNLI |" not in text


def test_report_numbers_from_hand_made_results(tmp_path):
    f1 = {"vkd": [0.80, 0.82, 0.84], "fsd": [0.85, 0.86, 0.87], "nds": [0.70, 0.71, 0.72]}
    lines = [_rec("mrpc", "teacher", 42, {"accuracy": 0.85, "f1": 0.90})]
    for method, values in f1.items():
        lines += [
            _rec(
                "mrpc",
                method,
                s,
                {"accuracy": v - 0.05, "f1": v},
                train_samples_per_second=10.0 if method == "vkd" else 9.0,
            )
            for s, v in zip((1, 2, 3), values)
        ]
    lines.append(_rec("mrpc", "vkd", 3, {}, status="failed", error="RuntimeError: old failure"))
    lines.append(_rec("mrpc", "vkd", 3, {"accuracy": 0.79, "f1": 0.84}))  # re-run supersedes the failure
    lines.append(_rec("mrpc", "fsdi", 1, {"accuracy": 0.8, "f1": 0.83}))
    fsdg = [0.80, 0.81, 0.83]
    lines += [_rec("mrpc", "fsdg", s, {"accuracy": v - 0.05, "f1": v}) for s, v in zip((1, 2, 3), fsdg)]
    lines.append(_rec("mrpc", "pkd", 1, {}, status="failed", error="ConfigError: unknown method 'pkd'"))
    lines.append(_rec("mrpc", "majority", 0, {"accuracy": 0.68, "f1": 0.81}))
    lines += [_rec("rte", "teacher", 42, {"accuracy": 0.55}), _rec("rte", "vkd", 1, {"accuracy": 0.53})]
    text = report_of(tmp_path, lines).read_text()
    assert text.splitlines()[5].startswith("python benchmarks/report.py --results")
    # mean (sample std) × 100: vkd F1 82.00 (2.00), fsd 86.00 (1.00), nds 71.00 (1.00)
    assert "| VKD | 77.00 (2.00) | 82.00 (2.00) |" in text
    assert "| FSD | 81.00 (1.00) | 86.00 (1.00) |" in text
    assert "| Teacher | 85.00 | 90.00 |" in text
    assert "| FSD | 95.6 % |" in text  # 86 / 90
    from scipy import stats

    p = stats.ttest_ind(f1["fsd"], f1["vkd"], equal_var=False, alternative="greater").pvalue
    assert f"| mrpc | FSD | F1 | 86.00 (n=3) | VKD | 82.00 (n=3) | greater | {p:.4f} |" in text
    assert "| FSDI | 83.00 [n=1] |" in text  # ablation table, single seed marked
    # FSD against each of its ablations: FSDG's three seeds tested, FSDI's single seed cannot be
    p = stats.ttest_ind(f1["fsd"], fsdg, equal_var=False, alternative="greater").pvalue
    assert f"| mrpc | FSD | F1 | 86.00 (n=3) | FSDG | 81.33 (n=3) | greater | {p:.4f} |" in text
    assert "| mrpc | FSD | F1 | 86.00 (n=3) | FSDI | 83.00 (n=1) | greater | – (" in text
    assert "| FSD | 0.90 |" in text  # throughput relative to VKD
    assert "unknown method 'pkd'" in text and "old failure" not in text
    assert "| Majority class | 68.00 | 81.00 |" in text  # a reference row, not a student method
    assert "| Majority class |" not in text.split("## Retention")[1].split("## Significance")[0]
    # RTE is reported in its own section, not in the core table
    main_table = text.split("## Main table")[1].split("##")[0]
    assert "RTE" not in main_table and "| Method | RTE Acc |" in text.split("## Further tasks")[1]
    assert "| Teacher | 55.00 |" in text and "| VKD | 53.00 [n=1] |" in text
    assert (
        "| core table | 4 × 7 × 3 | 9 of 84 | 0 | 1 of 4 |" in text
        and "| RTE | 1 × 7 × 3 | 1 of 21 | 0 | 1 of 1 |" in text
    )


def test_report_inlines_the_analysis_summary(tmp_path):
    analysis = tmp_path / "analysis" / "mrpc"
    analysis.mkdir(parents=True)
    (analysis / "report.md").write_text("# fsdkit analysis — mrpc\n")
    (analysis / "results.json").write_text(
        json.dumps(
            {
                "task": "mrpc",
                "n_examples": 408,
                "models": {"teacher": {}, "VKD": {}, "FSD": {}},
                "restoration": {
                    "VKD": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "agreement": 0.8},
                    "FSD": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "agreement": 0.875},
                },
                "cka": {"T": {"diagonal_mean": 1.0}, "VKD": {"diagonal_mean": 0.83}, "FSD": {"diagonal_mean": 0.85}},
                "relation_differences": {
                    "VKD": {"inter_euclidean": 17.6, "inter_cosine": 0.13, "intra_euclidean": 1.9, "intra_cosine": 0.12}
                },
            }
        )
    )
    text = report_of(tmp_path, [_rec("mrpc", "teacher", 42, {"accuracy": 0.85, "f1": 0.90})]).read_text()
    assert "| Student | Restoration F1 | Agreement | CKA diagonal | Inter Euclidean |" in text
    assert "| VKD | 0.8500 | 0.8000 | 0.8300 | 17.60 | 0.1300 | 1.9000 | 0.1200 |" in text
    assert "| FSD | 0.9000 | 0.8750 | 0.8500 | – | – | – | – |" in text  # missing values are marked, not invented
    assert "[analysis/mrpc/report.md](analysis/mrpc/report.md)" in text


def test_report_states_the_selection_effect_of_adopted_tuning_runs(tmp_path):
    lines = [
        _rec("mrpc", "teacher", 42, {"accuracy": 0.85, "f1": 0.90}),
        _rec("mrpc", "pkd", 1, {"accuracy": 0.7, "f1": 0.8}, adopted_from="tuning.jsonl"),
        _rec("mrpc", "vkd", 1, {"accuracy": 0.7, "f1": 0.8}),
    ]
    assert (
        "Selection effect: the MRPC seed 1 run of each weighted method is its chosen weight-search run, picked as the best of its 3 candidates"
        in report_of(tmp_path, lines).read_text()
    )  # the grid size of the recipe
    assert "Selection effect" not in report_of(tmp_path, lines[::2]).read_text()  # no adopted run → no caveat


def test_weight_search_ties_go_to_the_published_default():
    tune_mod = _load("tune")
    grid = {
        "internal-sid": [{"lambda_internal": 0.333}, {"lambda_internal": 1.0}, {"lambda_internal": 3.0}],
        "pkd": [{"beta_pkd": 33.3}, {"beta_pkd": 100.0}, {"beta_pkd": 300.0}],
    }
    records = [_rec("mrpc", "internal-sid", 1, {"f1": 0.8122}, candidate=c) for c in grid["internal-sid"]]
    records += [_rec("mrpc", "pkd", 1, {"f1": f1}, candidate=c) for f1, c in zip((0.818, 0.812, 0.812), grid["pkd"])]
    best = tune_mod.best_candidates(records, "f1", grid)
    assert best["internal-sid"]["candidate"] == {"lambda_internal": 1.0}  # all equal: the default stays
    assert best["pkd"]["candidate"] == {"beta_pkd": 33.3}  # a strictly better score wins
    assert tune_mod.best_candidates(records, "f1")["internal-sid"]["candidate"] == {"lambda_internal": 0.333}


def test_search_builds_equal_budget_sweeps_from_the_recipe(tmp_path):
    """benchmarks/search.py: one fsdkit sweep per (task, method) with the recipe's trials, the shared knobs plus the
    method's own weights (nds: the learning rate only), selecting on the holdout split; valid sweep configs."""
    from fsdkit.sweep import check_space

    search_mod = _load("search")
    suite_mod = _load("suite")
    recipe = suite_mod.load_recipe()
    suite = task_suite(tmp_path, "mrpc", recipe)
    specs = {m: search_mod.sweep_spec(suite, "mrpc", m) for m in ("nds", "vkd", "pkd", "rkd")}
    assert {s["trials"] for s in specs.values()} == {recipe["search"]["trials"]}
    assert set(specs["nds"]["space"]) == {"learning_rate"}
    assert set(specs["vkd"]["space"]) == {"learning_rate", "alpha", "temperature"}
    assert set(specs["rkd"]["space"]) == {
        "learning_rate",
        "alpha",
        "temperature",
        "lambda_rkd_distance",
        "lambda_rkd_angle",
    }
    for spec in specs.values():
        base = spec["base"]
        assert base["holdout_fraction"] == 0.1 and base["eval_strategy"] == "epoch" and "output_dir" not in base
        assert not set(base) & set(spec["space"])
        check_space("distill", base, spec["space"])
    v2 = task_suite(tmp_path, "mrpc", suite_mod.load_recipe(suite_mod.HERE / "recipe-v2.yaml"))
    assert search_mod.sweep_spec(v2, "mrpc", "vkd")["metric"] == "accuracy"  # recipe-v2's search.metric
    assert search_mod.sweep_spec(v2, "mrpc", "vkd")["startup_trials"] == 3
    assert "metric" not in search_mod.sweep_spec(v2, "stsb", "vkd")  # the task's main metric


def test_curves_study_records_each_curve_once_and_resumes(tmp_path, monkeypatch):
    import fsdkit

    curves_mod = _load("curves")
    calls = []

    def fake(kind):
        def run(**settings):
            calls.append((kind, settings.get("method"), settings.get("student"), settings["eval_strategy"]))
            out = Path(settings["output_dir"])
            (out / "checkpoints").mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text("{}")
            curve = [{"epoch": e, "eval_accuracy": a} for e, a in ((1, 0.70), (2, 0.75), (3, 0.755))]
            return {"metrics": {"validation": {"accuracy": 0.755}}, "main_metric": "accuracy", "curve": curve}

        return run

    monkeypatch.setattr(fsdkit, "finetune", fake("teacher"))
    monkeypatch.setattr(fsdkit, "distill", fake("student"))
    argv = [
        "--glue-dir",
        "glue",
        "--methods",
        "nds,vkd",
        "--epochs",
        "3",
        "--results",
        str(tmp_path / "curves.jsonl"),
        "--work-dir",
        str(tmp_path / "work"),
    ]
    assert curves_mod.main(argv) == 0
    assert calls == [
        ("teacher", None, None, "epoch"),
        ("student", "nds", "teacher", "epoch"),
        ("student", "vkd", "teacher", "epoch"),
        ("student", "nds", "minilm", "epoch"),
        ("student", "vkd", "minilm", "epoch"),
    ]
    records = suite_mod.read_records(tmp_path / "curves.jsonl")
    assert [(r["method"], r["init"]) for r in records] == [
        ("teacher", None),
        ("nds", "teacher"),
        ("vkd", "teacher"),
        ("nds", "pretrained"),
        ("vkd", "pretrained"),
    ]
    assert {r["recipe"] for r in records} == {"recipe-v2.yaml"}  # the default recipe, benchmark v2's
    assert curves_mod.plateaued(records[1]["curve"], "accuracy") is True  # 75.0 → 75.5: within 1 point
    assert curves_mod.plateaued(records[1]["curve"][:2], "accuracy") is False
    assert not (tmp_path / "work" / "mrpc" / "teacher-init" / "nds" / "seed1").exists()  # a student's folder is deleted
    assert (tmp_path / "work" / "mrpc" / "teacher" / "config.json").is_file()
    calls.clear()
    assert curves_mod.main(argv) == 0 and calls == []  # every job recorded: nothing runs again
    # another choice of layers is another curve, in its own folder, with its layers in the settings
    assert curves_mod.main([*argv, "--inits", "teacher", "--methods", "nds", "--layers", "1,3,5"]) == 0
    assert calls == [("student", "nds", "teacher", "epoch")]
    last = suite_mod.read_records(tmp_path / "curves.jsonl")[-1]
    assert last["settings"]["student_layers"] == [1, 3, 5] and last["init"] == "teacher"
    folder = curves_mod.student_settings(
        suite_mod.load_recipe(suite_mod.DEFAULT_RECIPE),
        "mrpc",
        "nds",
        "teacher",
        1,
        3.0,
        "glue",
        tmp_path / "work",
        [1, 3, 5],
    )["output_dir"]
    assert folder.endswith("teacher-init/nds/layers-1-3-5/seed1")
    # a teacher budget's curve (--teacher-epochs): its own teacher, folder and hash; its students distil from it
    calls.clear()
    budget = [*argv, "--inits", "teacher", "--methods", "nds", "--teacher-epochs", "6"]
    assert curves_mod.main(budget) == 0
    assert calls == [("teacher", None, None, "epoch"), ("student", "nds", "teacher", "epoch")]
    teacher, student = suite_mod.read_records(tmp_path / "curves.jsonl")[-2:]
    assert teacher["settings"]["epochs"] == 6 and teacher["output_dir"].endswith("mrpc/teacher-6ep")
    assert student["teacher_epochs"] == 6  # (folders are not in a record's settings: this field says which teacher)
    recipe_budget = suite_mod.load_recipe(suite_mod.DEFAULT_RECIPE)
    recipe_budget["teacher"]["per_task"] = {"mrpc": {"epochs": 6}}  # the budget written into a recipe: the same hash
    assert teacher["settings_hash"] == suite_mod.settings_hash(
        {**curves_mod.teacher_settings(recipe_budget, "mrpc", "glue", tmp_path / "work"), "resume": False}
    )
    calls.clear()
    assert curves_mod.main(budget) == 0 and calls == []
    # a new machine: the recorded teacher's folder is gone, so it is trained again (its students are recorded)
    shutil.rmtree(tmp_path / "work" / "mrpc" / "teacher-6ep")
    assert curves_mod.main(budget) == 0 and calls == [("teacher", None, None, "epoch")]


def test_report_shows_the_regime_study_with_peaks_and_the_plateau_rule(tmp_path, monkeypatch, capsys):
    """--regime-results: each recorded curve of benchmarks/curves.py becomes a row (teacher first, then the students
    by initialisation and layer set) with its peak and the plateau rule; --regime-plots writes and links the PNGs."""
    curves_mod = _load("curves")

    def rec(method, init, values, metric="f1", **settings):
        curve = [{"epoch": e + 1, f"eval_{metric}": v, "eval_accuracy": v - 0.1} for e, v in enumerate(values)]
        return {
            "task": "mrpc",
            "method": method,
            "seed": 42 if init is None else 1,
            "status": "ok",
            "init": init,
            "main_metric": metric,
            "curve": curve,
            "metrics": {metric: values[-1]},
            "wall_time": 600,
            "settings": settings,
        }

    records = [
        rec("vkd", "pretrained", [0.80, 0.83, 0.76]),
        rec("nds", "teacher", [0.79, 0.818, 0.812]),
        {**rec("nds", "teacher", [0.70, 0.74, 0.745], student_layers=[1, 3, 5]), "recipe": "recipe-v2.yaml"},
        rec("teacher", None, [0.813, 0.852, 0.857]),
        {"task": "mrpc", "method": "vkd", "status": "failed"},
    ]
    path = tmp_path / "curves.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = curves_mod.curve_rows(suite_mod.read_records(path))
    assert len(rows) == 4 and rows[0]["peak"] == pytest.approx(83.0) and rows[0]["peak_epoch"] == 2
    assert rows[0]["plateau"] is False and rows[1]["plateau"] is True and rows[2]["layers"] == [1, 3, 5]
    # the metric the recipe's epoch rule reads instead of the main one (recipe-v2: MRPC accuracy)
    assert curves_mod.curve_rows(suite_mod.read_records(path), {"mrpc": "accuracy"})[0]["peak"] == pytest.approx(73.0)
    regime = ["--regime-results", str(path), "--regime-plots", str(tmp_path / "plots")]
    teacher = {**records[3], "metrics": {"f1": 0.857}}
    out = report_of(tmp_path, [teacher], *regime, recipe=suite_mod.HERE / "recipe-v2.yaml", results="v2.jsonl")
    text = out.read_text()
    section = text.split("## Two regimes and the choice of layers")[1].split("\n## ")[0]
    table = [line for line in section.splitlines() if line.startswith("| MRPC")]
    assert table == [
        "| MRPC | Teacher | – | all | 42 | Acc 71.3 75.2 75.7 | 75.7 (3 of 3) | yes | 10.0 | recipe.yaml |",
        "| MRPC | nDS | teacher-initialised | first 3 | 1 | Acc 69.0 71.8 71.2 | 71.8 (2 of 3) | yes | 10.0 | recipe.yaml |",
        "| MRPC | nDS | teacher-initialised | 1,3,5 | 1 | Acc 60.0 64.0 64.5 | 64.5 (3 of 3) | yes | 10.0 | recipe-v2.yaml |",
        "| MRPC | VKD | pretrained layers | first 3 | 1 | Acc 70.0 73.0 66.0 | 73.0 (2 of 3) | no | 10.0 | recipe.yaml |",
    ]
    assert (tmp_path / "plots" / "mrpc-pretrained.png").is_file()
    assert "[mrpc-pretrained](plots/mrpc-pretrained.png)" in section
    # a plot's lines: one per method and schedule, seeds as one line, recipes apart where the plot has several
    from matplotlib.figure import Figure

    import fsdkit.analysis.plots as plots_mod

    drawn, styled = {}, {}
    monkeypatch.setattr(
        plots_mod,
        "learning_curves",
        lambda curves, title, *rest, styles: drawn.setdefault(title, curves) and styled.update(styles) or Figure(),
    )
    more = [{**records[1], "seed": 2}, {**records[1], "recipe": "recipe-v2.yaml"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records + more))
    curves_mod.plot(path, tmp_path / "plots2")
    assert {name: len(runs) for name, runs in drawn["mrpc, teacher-initialised students"].items()} == {
        "nds, 3 ep, recipe.yaml": 2,
        "nds, 3 ep, layers 1,3,5, recipe-v2.yaml": 1,
        "nds, 3 ep, recipe-v2.yaml": 1,
    }
    assert list(drawn["mrpc, pretrained-initialised students"]) == ["vkd, 3 ep"]
    # colour by method, line style by schedule
    assert styled["nds, 3 ep, layers 1,3,5, recipe-v2.yaml"] == ("nds", "3 ep, layers 1,3,5, recipe-v2.yaml")
    assert styled["vkd, 3 ep"] == ("vkd", "3 ep")
    capsys.readouterr()
    curves_mod.summary(path)  # the console's labels set a curve apart as the plot's legend does
    assert "mrpc nds (teacher, layers 1,3,5) seed 1: f1 70.0 74.0 74.5 — plateau: True" in capsys.readouterr().out


def test_the_pretrained_table_takes_seed_1s_longest_curve_of_the_recipe_per_method():
    def row(method, values, init="pretrained", seed=1, recipe="recipe-v2.yaml", layers=None):
        peak = max(range(len(values)), key=values.__getitem__)
        return {
            "task": "stsb",
            "method": method,
            "init": init,
            "layers": layers,
            "teacher_epochs": None,
            "seed": seed,
            "metric": "pearson",
            "values": values,
            "peak": values[peak],
            "peak_epoch": peak + 1,
            "recipe": recipe,
        }

    rows = [
        row("teacher", [80.0, 86.6], init=None, seed=42, recipe="recipe.yaml"),
        row("vkd", [30.0, 38.0]),
        row("vkd", [30.0, 74.1, 72.5]),  # the longer schedule wins
        row("vkd", [90.0], seed=2),
        row("vkd", [91.0, 92.0, 93.0, 94.0], recipe="recipe.yaml"),
        row("vkd", [95.0], layers=[1, 3, 5]),
        row("nds", [60.0, 65.9]),
        row("nds", [99.0], init="teacher"),
    ]
    lines = report_mod.pretrained_table(rows, "recipe-v2.yaml")
    assert lines[2:5] == [
        "| Task (metric) | Teacher | nDS | VKD |",
        "|---|---|---|---|",
        "| STSB (Pearson) | 86.6 | 65.9 (2/2) | 74.1 (2/3) |",
    ]
    assert report_mod.pretrained_table(rows, "recipe-v3.yaml") == []


def test_the_suite_takes_its_cells_and_seeds_from_the_recipe_table(tmp_path, monkeypatch):
    """Without --tasks, --methods and --seeds, suite.py runs recipe-v2's `table`: 5 seeds on MRPC, 3 for an ablation,
    seed-major; a recipe without `table` (v1's) gives its former defaults, 3 seeds of the 7 core methods."""
    v2 = suite_mod.load_recipe(suite_mod.DEFAULT_RECIPE)
    suite = suite_mod.Suite(
        glue_dir="glue",
        tasks=["mrpc"],
        methods=["vkd", "fsdi"],
        seeds=None,
        recipe=v2,
        results=tmp_path / "r.jsonl",
        work_dir=tmp_path,
    )
    plan = suite.plan()
    assert plan[:2] == [("mrpc", "teacher", 42), ("mrpc", "majority", 0)]
    assert plan[2:] == [
        ("mrpc", "vkd", 1),
        ("mrpc", "fsdi", 1),
        ("mrpc", "vkd", 2),
        ("mrpc", "fsdi", 2),
        ("mrpc", "vkd", 3),
        ("mrpc", "fsdi", 3),
        ("mrpc", "vkd", 4),
        ("mrpc", "vkd", 5),
    ]
    assert suite_mod.table_seeds(v2, "sick", "vkd") == [1, 2, 3]
    assert suite_mod.table_seeds(suite_mod.load_recipe(suite_mod.V1_RECIPE), "mrpc", "fsdi") == [1, 2, 3]
    assert set(v2["table"]["methods"]) >= {*suite_mod.TABLE_METHODS, *suite_mod.ABLATION_METHODS, "fsdi-minilm"}
    ran = []

    class Recording(suite_mod.Suite):
        def run(self):
            ran.append((self.tasks, self.methods, self.seeds))
            return {"failed": 0}

    import fsdkit.cli

    monkeypatch.setattr(fsdkit.cli, "unwind_on_termination", lambda: None)
    monkeypatch.setattr(suite_mod, "Suite", Recording)
    assert (
        suite_mod.main(["--glue-dir", "glue", "--results", str(tmp_path / "r.jsonl"), "--work-dir", str(tmp_path)]) == 0
    )
    assert ran == [(["mrpc", "stsb", "cola", "sick"], v2["table"]["methods"], None)]


def test_a_recipe_section_takes_its_per_task_budget():
    """recipe-v2's regime rule writes each task's epoch budget under ``per_task``; other tasks keep the default, and a
    recipe without ``per_task`` gives the settings (and hashes) it gave before."""
    recipe = {"student": {"epochs": 3, "learning_rate": 1e-4, "per_task": {"stsb": {"epochs": 5}}}}
    assert suite_mod.recipe_section(recipe, "student", "stsb") == {"epochs": 5, "learning_rate": 1e-4}
    assert suite_mod.recipe_section(recipe, "student", "mrpc") == {"epochs": 3, "learning_rate": 1e-4}
    v1 = suite_mod.load_recipe(suite_mod.V1_RECIPE)
    assert suite_mod.recipe_section(v1, "student", "mrpc") == v1["student"]
    v2 = suite_mod.load_recipe(BENCH / "recipe-v2.yaml")
    for task in ("mrpc", "stsb", "sick", "cola"):
        settings = suite_mod.recipe_section(v2, "student", task)
        assert settings["student"] == "teacher" and settings["epochs"] >= 1 and "per_task" not in settings


def test_the_benchmark_workers_unwind_on_a_kill(monkeypatch, tmp_path):
    """suite.py, curves.py and search.py make SIGTERM unwind like Ctrl-C (fsdkit.cli.unwind_on_termination) before
    they run anything: a killed worker removes its staged artifacts and resumes from its checkpoint."""
    import fsdkit.cli

    installed = []
    monkeypatch.setattr(fsdkit.cli, "unwind_on_termination", lambda: installed.append(True))
    common = ["--glue-dir", str(tmp_path), "--tasks", "no-such-task"]
    places = ["--results", str(tmp_path / "r.jsonl"), "--work-dir", str(tmp_path)]
    for name, argv in (
        ("suite", common),
        ("curves", common + places),
        ("search", common + places + ["--methods", "vkd"]),
    ):
        installed.clear()
        try:  # the unknown task fails the run (raised, or recorded as failed) after the handler is installed
            _load(name).main(argv)
        except Exception as exc:  # noqa: BLE001
            assert "no-such-task" in str(exc), name
        assert installed == [True], name


def test_staged_search_builds_stage_one_and_stage_two_sweeps_per_task(tmp_path):
    """benchmarks/staged_search.py (recipe-v3): stage 1 searches the shared knobs on VKD and nDS's learning rate on
    every task; stage 2 fixes them from the task's VKD study and searches the method's own weights; every spec is a
    valid sweep config; a stage-2 study waits for its stage-1 study; jobs run every task's stage 1 first."""
    import optuna

    from fsdkit.sweep import check_space

    staged = _load("staged_search")
    recipe = suite_mod.load_recipe(staged.DEFAULT_RECIPE)
    assert recipe["student"]["per_task"]["sick"] == {"epochs": 6}  # v2's budgets, through `extends`
    real = task_suite(tmp_path, "mrpc", recipe)
    real.ensure_memory = lambda task: str(tmp_path / "memory")  # no memory is built here
    for method, space in recipe["search"]["stage2"]["methods"].items():  # every stage-2 study of the recipe is valid
        spec = staged.sweep_spec(real, 2, "mrpc", method)
        _, checked = check_space("distill", spec["base"], spec["space"])
        assert all(dist.get("off") for dist in checked.values()), method  # every weight can switch its term off
        assert spec["space"] == space, method  # MRPC's measured ranges are the ones the recipe writes out
    recipe["search"]["storage_file"] = str(tmp_path / "search.db")
    recipe["search"]["stage2"]["methods"] = {
        "fsdi": {"lambda_intra": {"type": "float", "low": 1e-3, "high": 10, "log": True, "off": True}}
    }
    # each task's weights span its own measured range (FSD's terms for an FSD ablation); no measurement, no study
    scale = {"fsd.lambda_intra": {"range": [1e-3, 1e4]}, "fsd-procrustes.lambda_intra": {"range": [1, 2]}}
    (tmp_path / "scale.json").write_text(json.dumps({"tasks": {"stsb": scale}}))
    recipe["search"]["stage2"]["ranges_from"] = str(tmp_path / "scale.json")
    with pytest.raises(SystemExit, match="stage 2 of mrpc: its term magnitudes are not measured"):
        staged.sweep_spec(real, 2, "mrpc", "fsdi")
    suite = task_suite(tmp_path, "stsb", recipe)
    vkd, nds = staged.sweep_spec(suite, 1, "stsb", "vkd"), staged.sweep_spec(suite, 1, "stsb", "nds")
    assert set(vkd["space"]) == {"learning_rate", "alpha", "temperature"} and set(nds["space"]) == {"learning_rate"}
    assert vkd["trials"] == nds["trials"] == 8 and vkd["study_name"] == "v3-stsb-vkd" and "metric" not in vkd
    assert vkd["base"]["epochs"] == 4 and vkd["base"]["holdout_fraction"] == 0.1
    fsdi = staged.sweep_spec(suite, 2, "stsb", "fsdi")
    assert fsdi["space"]["lambda_intra"] == {"type": "float", "low": 1e-3, "high": 1e4, "log": True, "off": True}
    assert fsdi["fixed_from"] == {"study": "v3-stsb-vkd", "options": ["alpha", "learning_rate", "temperature"]}
    assert not {"learning_rate", "alpha", "temperature"} & set(fsdi["base"])
    for spec in (vkd, nds, fsdi):
        check_space("distill", spec["base"], spec["space"])
    assert staged.sweep_spec(suite, 1, "mrpc", "vkd")["metric"] == "accuracy"
    # stage 2 first runs stage 1's rows once more at their best, on its own teacher: one run, nothing searched
    assert recipe["search"]["stage2"]["rerun"] == ["vkd", "nds"]
    vkd_again, nds_again = staged.sweep_spec(suite, 2, "stsb", "vkd"), staged.sweep_spec(suite, 2, "stsb", "nds")
    assert vkd_again["study_name"] == "v3-stsb-vkd-rerun" and vkd_again["space"] == {} and vkd_again["trials"] == 1
    assert vkd_again["fixed_from"] == {"study": "v3-stsb-vkd", "options": ["alpha", "learning_rate", "temperature"]}
    assert nds_again["fixed_from"] == {"study": "v3-stsb-nds", "options": ["learning_rate"]}
    assert vkd_again["base"]["method"] == "vkd" and "learning_rate" not in nds_again["base"]
    assert Path(vkd_again["output_dir"]).name == "vkd-rerun" and Path(vkd["output_dir"]).name == "vkd"  # own folders
    for spec in (vkd_again, nds_again):
        check_space("distill", spec["base"], spec["space"])
    assert staged.jobs(recipe, ["mrpc", "stsb"], [1, 2]) == [
        (1, "mrpc", "vkd"),
        (1, "mrpc", "nds"),
        (1, "stsb", "vkd"),
        (1, "stsb", "nds"),
        (2, "mrpc", "vkd"),
        (2, "mrpc", "nds"),
        (2, "mrpc", "fsdi"),
        (2, "stsb", "vkd"),
        (2, "stsb", "nds"),
        (2, "stsb", "fsdi"),
    ]
    assert staged.study_state(recipe, 1, "stsb", "vkd") == "open"
    assert staged.study_state(recipe, 2, "stsb", "fsdi") == "blocked"
    study = optuna.create_study(study_name="v3-stsb-vkd", storage=staged.storage_url(recipe), direction="maximize")
    for value in range(8):
        study.tell(study.ask({"alpha": optuna.distributions.FloatDistribution(0, 1)}), float(value))
    assert staged.study_state(recipe, 1, "stsb", "vkd") == "done"
    assert staged.study_state(recipe, 2, "stsb", "fsdi") == "open"
    assert staged.study_state(recipe, 2, "stsb", "vkd") == "open"  # its rerun: one trial
    assert staged.study_state(recipe, 2, "stsb", "nds") == "blocked"  # nDS's rerun waits for nDS's stage 1


def test_settle_writes_each_methods_per_task_settings_from_its_finished_study(tmp_path):
    """staged_search --settle: a finished study's best trial becomes its method's per-task settings (stage 2: on top of
    the stage-1 knobs it fixed; a weight switched off is 0), with its study and trial; an unfinished study gives no
    entry and the suite refuses that cell; `take` is each task's best holdout row. The search's progress reports the
    best so far after each trial and marks a study whose best still rose in its last third; the report shows both."""
    import optuna
    import yaml

    staged = _load("staged_search")
    search = dict(suite_mod.load_recipe(staged.DEFAULT_RECIPE)["search"])
    search.update(storage_file=str(tmp_path / "search.db"), tasks=["stsb", "mrpc"])
    search["stage1"] = {**search["stage1"], "trials": 3}
    search["stage2"] = {**search["stage2"], "trials": 3, "methods": {"fsdi": search["stage2"]["methods"]["fsdi"]}}
    search["stage2"]["rerun"] = []  # every study on one teacher here (the next tests rerun stage 1 on another)
    path = tmp_path / "recipe.yaml"
    outputs = {"search_results": str(tmp_path / "teachers.jsonl")}  # no teacher records: no teacher known
    recipe_text = {"extends": str(staged.DEFAULT_RECIPE), "title": "t", "search": search, "outputs": outputs}
    path.write_text(yaml.safe_dump(recipe_text))
    recipe = suite_mod.load_recipe(path)
    storage = staged.storage_url(recipe)
    knobs = {"learning_rate": 1e-4, "alpha": 0.3, "temperature": 2.0}

    def study(name, values, options, fixed=None):
        made = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        made.set_user_attr("budget", 3)
        made.set_user_attr("metric", "holdout.pearson")
        if fixed is not None:
            made.set_user_attr("fixed_from", {"study": "v3-stsb-vkd", "options": fixed})
        for value, option in zip(values, options, strict=True):
            trial = made.ask()
            trial.set_user_attr("options", option)
            if value is None:
                made.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                made.tell(trial, value)

    study("v3-stsb-vkd", [0.5, 0.7, None], [{**knobs, "alpha": a} for a in (0.1, 0.3, 0.9)])
    study("v3-stsb-nds", [0.6, 0.6, 0.8], [{"learning_rate": lr} for lr in (1e-5, 2e-5, 3e-5)])
    weights = (1.0, 0.0, 10.0, 0.0)  # the last: off again, a repeat of trial 1 (not counted)
    study("v3-stsb-fsdi", [0.65, 0.75, 0.7, 0.75], [{"lambda_intra": w} for w in weights], fixed=knobs)
    study("v3-mrpc-vkd", [0.9], [knobs])  # 1 of 3: not settled
    lost = optuna.create_study(study_name="v3-mrpc-nds", storage=storage, direction="maximize")
    start = datetime.datetime(2026, 12, 7, 8, 0)
    lost.add_trial(  # a trial whose worker was lost after half an hour: its cost counts
        optuna.trial.FrozenTrial(
            number=0,
            trial_id=0,
            state=optuna.trial.TrialState.FAIL,
            value=None,
            datetime_start=start,
            datetime_complete=start + datetime.timedelta(minutes=30),
            params={},
            distributions={},
            user_attrs={},
            system_attrs={},
            intermediate_values={},
        )
    )
    vkd = optuna.load_study(study_name="v3-stsb-vkd", storage=storage)
    for error in ("FloatingPointError: loss is nan", "KeyboardInterrupt: "):  # not counted, but shown
        trial = vkd.ask()
        trial.set_user_attr("error", error)
        vkd.tell(trial, state=optuna.trial.TrialState.FAIL)

    progress = {(s["task"], s["method"]): s for s in staged.study_progress(recipe)}
    assert progress["stsb", "vkd"]["best_so_far"] == [0.5, 0.7, 0.7] and progress["stsb", "vkd"]["pruned"] == 1
    assert not progress["stsb", "vkd"]["still_improving"] and progress["stsb", "nds"]["still_improving"]
    assert progress["mrpc", "vkd"]["values"] == [0.9] and not progress["mrpc", "vkd"]["done"]
    assert progress["mrpc", "fsdi"]["values"] == [] and progress["mrpc", "fsdi"]["best"] is None
    assert progress["stsb", "fsdi"]["values"] == [0.65, 0.75, 0.7] and progress["stsb", "fsdi"]["repeats"] == 1

    table = staged.settle(path, tmp_path / "table.yaml")
    fsdi = table["methods"]["fsdi"]["per_task"]["stsb"]
    assert fsdi == {**knobs, "lambda_intra": 0.0, "chosen_from": {"study": "v3-stsb-fsdi", "trial": 1, "holdout": 0.75}}
    assert (
        table["methods"]["vkd"]["per_task"]["stsb"]["alpha"] == 0.3
        and "mrpc" not in table["methods"]["vkd"]["per_task"]
    )
    assert table["methods"]["fsd"] == {"memory_lr": 0.1}  # a row the search does not tune: kept as it is
    assert table["take"] == {
        "stsb": {"method": "nds", "study": "v3-stsb-nds", "holdout": 0.8, "metric": "holdout.pearson"}
    }
    assert table["settled"] == {"stsb": "3 of 3 studies", "mrpc": "0 of 3 studies"}  # MRPC: no row to take yet
    (tmp_path / "elsewhere").mkdir()
    assert staged.settle(path, tmp_path / "elsewhere" / "t.yaml")["extends"] == "../recipe.yaml"
    with pytest.raises(SystemExit, match="already has per-task settings"):
        staged.settle(tmp_path / "table.yaml", tmp_path / "again.yaml")
    runs = task_suite(tmp_path, "stsb", suite_mod.load_recipe(tmp_path / "table.yaml"))
    settings = runs.student_settings("stsb", "fsdi", 1)
    assert settings["lambda_intra"] == 0.0 and settings["learning_rate"] == 1e-4 and "chosen_from" not in settings
    assert settings["epochs"] == 4  # the task's budget, from recipe-v2 through both `extends`
    with pytest.raises(suite_mod.UnsettledCell, match="'vkd' has no per_task settings for 'mrpc'.*chosen for: stsb"):
        runs.student_settings("mrpc", "vkd", 1)
    unsettled = {"task": "mrpc", "method": "vkd", "seed": 1, "settings_hash": "h"}  # e.g. a run of the search recipe
    assert runs.split_current([unsettled]) == ([], [unsettled])  # not one of the table's runs (no crash: report.py)
    runs.tasks, runs.methods, runs.seeds, runs.runner = ["mrpc"], ["vkd"], [1], FakeRunner()
    counts = runs.run()  # the unsettled cell is blocked, the rest of the suite goes on
    assert counts["ok"] == 2 and counts["blocked"] == 1  # the teacher and the majority baseline
    assert [c[1] for c in runs.runner.calls] == ["teacher"]

    text = "\n".join(report_mod.staged_search_section(list(progress.values()), {"stsb": "v3-search/stsb.png"}))
    assert "| STSB | 1 | nDS | – | 3 of 3 | Pearson 80.00 (#2) | 60.0 60.0 80.0 | 0.0 | **still rising** |" in text
    assert "| MRPC | 1 | nDS | – | 0 of 3 (1 stopped) | – | – | 0.5 |  |" in text
    assert "by task: STSB 0.0, MRPC 0.5; 0.5 in all" in text
    vkd_row = "| STSB | 1 | VKD | – | 3 of 3 (1 pruned; 1 failed: FloatingPointError; 1 stopped) | Pearson 70.00 (#1) |"
    assert vkd_row + " 50.0 70.0 70.0 | 0.0 |  |" in text
    assert "| STSB | 2 | FSDI | – | 3 of 3 (1 repeat not counted) | Pearson 75.00 (#1) |" in text
    assert "![best so far, STSB](v3-search/stsb.png)" in text
    plots = report_mod.plot_best_so_far(list(progress.values()), tmp_path / "plots")
    assert sorted(plots) == ["mrpc", "stsb"] and all(p.stat().st_size > 0 for p in plots.values())


def test_settle_gives_a_tied_row_to_take_to_the_simpler_method_and_names_the_others(tmp_path):
    """MRPC's holdout has 367 rows: equal best scores happen. The row to take is then the one training with fewer
    distillation terms (nDS none, VKD its KD term, a stage-2 row KD plus its weights that are not off), then the first
    in the search's order; the others are named."""
    import optuna
    import yaml

    staged = _load("staged_search")
    search = dict(suite_mod.load_recipe(staged.DEFAULT_RECIPE)["search"])
    search.update(storage_file=str(tmp_path / "search.db"), tasks=["stsb"])
    search["stage1"] = {**search["stage1"], "trials": 1}
    methods = {m: search["stage2"]["methods"][m] for m in ("fsdi", "fsd")}
    search["stage2"] = {**search["stage2"], "trials": 1, "methods": methods, "rerun": []}
    path = tmp_path / "recipe.yaml"
    outputs = {"search_results": str(tmp_path / "teachers.jsonl")}
    path.write_text(
        yaml.safe_dump({"extends": str(staged.DEFAULT_RECIPE), "title": "t", "search": search, "outputs": outputs})
    )
    storage = staged.storage_url(suite_mod.load_recipe(path))

    def study(method, value, options):
        made = optuna.create_study(study_name=f"v3-stsb-{method}", storage=storage, direction="maximize")
        made.set_user_attr("metric", "holdout.pearson")
        trial = made.ask()
        trial.set_user_attr("options", options)
        made.tell(trial, value)

    off = {"lambda_intra": 0.0, "lambda_local": 0.0, "lambda_global": 0.0}
    study("vkd", 0.7, {"learning_rate": 1e-4, "alpha": 0.3, "temperature": 2.0})
    study("nds", 0.6, {"learning_rate": 1e-4})
    study("fsd", 0.7, {**off, "lambda_local": 3.0})  # KD + one term: two terms
    study("fsdi", 0.7, {"lambda_intra": 0.0})  # every weight off: VKD's one term, later in the search's order
    take = staged.settle(path, tmp_path / "table.yaml")["take"]["stsb"]
    assert take["method"] == "vkd" and take["tied_with"] == ["fsd", "fsdi"]
    recipe = suite_mod.load_recipe(staged.DEFAULT_RECIPE)
    minilm_off = {"stage": 2, "method": "fsdi-minilm", "best": {"options": {"lambda_intra": 0.0}}}
    assert staged.terms_in_use(recipe, minilm_off) == 2  # KD and the attention term it always adds
    study_nds = optuna.load_study(study_name="v3-stsb-nds", storage=storage)
    trial = study_nds.ask()
    study_nds.tell(trial, 0.7)  # beyond nDS's budget of 1: not counted
    assert staged.settle(path, tmp_path / "table.yaml")["take"]["stsb"]["method"] == "vkd"


def test_settle_compares_the_rows_of_one_teacher_and_stage_one_through_its_rerun(tmp_path):
    """A new machine fine-tunes the search teachers again: other weights. The row to take is chosen among the rows
    of the teacher most stage-2 studies used alone (a study begun on one and finished on another counts for none;
    among equally many, the reruns' teacher), stage 1's rows through their reruns on it, and the studies of another
    teacher are named. On an unchanged teacher a rerun is its stage-1 row's run again: compared once. No rerun sets
    a method's per-task settings; the report marks a row taken through its rerun."""
    import optuna
    import yaml

    staged = _load("staged_search")

    def recipe_with(methods):
        search = dict(suite_mod.load_recipe(staged.DEFAULT_RECIPE)["search"])
        search.update(storage_file=str(tmp_path / f"{'-'.join(methods)}.db"), tasks=["sick"])
        search["stage1"] = {**search["stage1"], "trials": 1}
        spaces = {m: search["stage2"]["methods"][m] for m in methods}
        search["stage2"] = {**search["stage2"], "trials": 1, "methods": spaces}
        path = tmp_path / f"{'-'.join(methods)}.yaml"
        recipe = {"extends": str(staged.DEFAULT_RECIPE), "title": "t", "search": search}
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))  # the methods in the search's order
        return path

    old, new = "a" * 12, "b" * 12
    knobs = {"learning_rate": 1e-4, "alpha": 0.3, "temperature": 2.0}

    def study(path, name, value, options, teacher):
        made = optuna.create_study(
            study_name=name, storage=staged.storage_url(suite_mod.load_recipe(path)), direction="maximize"
        )
        made.set_user_attr("metric", "holdout.accuracy")
        if "+" in teacher:  # begun on one teacher, finished on the other
            made.set_user_attr("teachers", [sha + "0" * 52 for sha in teacher.split("+")])
        elif name.endswith(("-vkd", "-nds")):  # a stage-1 study of the first search (its teacher written in later)
            made.set_user_attr("teacher_fingerprint", teacher)
        else:  # what fsdkit sweep records: the SHA-256 of the teacher's weights
            made.set_user_attr("teacher_sha256", teacher + "0" * 52)
        trial = made.ask()
        trial.set_user_attr("options", options)
        made.tell(trial, value)
        return made

    def search(path, fsdi_teacher=new):
        study(path, "v3-sick-vkd", 0.85, knobs, old)  # on the first teacher: the best score, not comparable
        study(path, "v3-sick-nds", 0.60, {"learning_rate": 2e-4}, old)
        study(path, "v3-sick-vkd-rerun", 0.79, {}, new)
        study(path, "v3-sick-nds-rerun", 0.70, {}, new)
        return {
            "fsdl": study(path, "v3-sick-fsdl", 0.90, {"lambda_local": 3.0}, f"{old}+{new}"),
            "fsdi": study(path, "v3-sick-fsdi", 0.80, {"lambda_intra": 3.0}, fsdi_teacher),
        }

    made = {}
    for methods in (("fsdi", "fsdl"), ("fsdl", "fsdi")):  # FSDL's study, of both teachers, first or last
        path = recipe_with(methods)
        made[methods] = search(path)
        progress = {s["study"]: s for s in staged.study_progress(suite_mod.load_recipe(path))}
        teacher_of = [progress[f"v3-sick-{m}"]["teacher"] for m in ("vkd", "nds", "vkd-rerun", "fsdi", "fsdl")]
        assert teacher_of == [old, old, new, new, f"{old}+{new}"]
        assert progress["v3-sick-vkd-rerun"]["rerun"] and progress["v3-sick-vkd-rerun"]["stage"] == 2
        assert progress["v3-sick-vkd-rerun"]["budget"] == 1 and progress["v3-sick-vkd-rerun"]["done"]
        table = staged.settle(path, tmp_path / "table.yaml")
        assert table["settled"] == {"sick": "6 of 6 studies"}
        assert table["take"]["sick"] == {
            "method": "fsdi",  # 0.80 beats VKD's rerun (0.79); stage 1's 0.85 and FSDL's 0.90 had another teacher
            "study": "v3-sick-fsdi",
            "holdout": 0.8,
            "metric": "holdout.accuracy",
            "teacher": new,
            "other_teacher": ["v3-sick-vkd", "v3-sick-nds", "v3-sick-fsdl"],
        }, methods
        vkd = table["methods"]["vkd"]["per_task"]["sick"]  # settings come from the study that searched them
        assert vkd == {**knobs, "chosen_from": {"study": "v3-sick-vkd", "trial": 0, "holdout": 0.85}}
        assert table["methods"]["fsdl"]["per_task"]["sick"]["lambda_local"] == 3.0  # still the table's settings
    text = "\n".join(report_mod.staged_search_section(list(progress.values())))
    assert f"| SICK | 2 | VKD (rerun) | {new} | 1 of 1 | Acc 79.00 (#0) | 79.0 |" in text
    assert f"| SICK | 1 | VKD | {old} | 1 of 1 | Acc 85.00 (#0) |" in text
    tables = report_mod._Tables.of([], {"take": table["take"]}, 2, None)
    assert (
        f"- SICK: compared among the rows of teacher {new}; not compared (another teacher): v3-sick-vkd, v3-sick-nds, "
        "v3-sick-fsdl."
    ) in "\n".join(report_mod._take_section(tables))

    studies = made["fsdi", "fsdl"]  # one study of each teacher alone: the reruns' teacher, not the first study's
    studies["fsdi"].set_user_attr("teacher_sha256", old + "0" * 52)
    studies["fsdl"].set_user_attr("teachers", [new + "0" * 52])
    take = staged.settle(recipe_with(("fsdi", "fsdl")), tmp_path / "table.yaml")["take"]["sick"]
    assert take["teacher"] == new and take["study"] == "v3-sick-fsdl"
    path = recipe_with(("fsdi",))
    search(path, fsdi_teacher=old)  # stage 2 on stage 1's teacher: the reruns are left out, VKD compared once
    take = staged.settle(path, tmp_path / "table.yaml")["take"]["sick"]
    assert take == {
        "method": "vkd",
        "study": "v3-sick-vkd",
        "holdout": 0.85,
        "metric": "holdout.accuracy",
        "teacher": old,
        "other_teacher": ["v3-sick-vkd-rerun", "v3-sick-nds-rerun"],
    }
    take_text = "\n".join(
        report_mod._take_section(
            report_mod._Tables.of([], {"take": {"sick": {**take, "study": "v3-sick-vkd-rerun"}}}, 2, None)
        )
    )
    assert "| SICK | VKD | Acc 85.00 (its stage-2 rerun) |" in take_text


def test_report_compares_two_benchmarks_cell_by_cell_and_names_each_tasks_row_to_take():
    """A cell moved when its means differ by more than the larger of the two seed standard deviations; `take` (the
    table recipe's best holdout row per task) is shown with its dev score."""

    def stat(mean, std):
        return {"f1": {"mean": mean, "std": std, "n": 3}, "accuracy": {"mean": mean, "std": std, "n": 3}}

    before = {("mrpc", "fsd"): stat(0.80, 0.01), ("mrpc", "vkd"): stat(0.82, 0.01), ("mrpc", "teacher"): stat(0.9, 0)}
    now = {("mrpc", "fsd"): stat(0.84, 0.02), ("mrpc", "vkd"): stat(0.825, 0.01), ("mrpc", "teacher"): stat(0.9, 0)}
    text = "\n".join(report_mod.comparison_section(now, before, ("v2", "v3")))
    assert "| MRPC | FSD | 80.00 (1.00) | 84.00 (2.00) | +4.00 |" in text
    assert "VKD |" not in text and "1 cells present in both did not" in text and "Teacher" not in text
    records = [
        {"task": "mrpc", "method": "nds", "seed": s, "metrics": {"accuracy": 0.8, "f1": 0.85 + s / 100}} for s in (1, 2)
    ]
    tables = report_mod._Tables.of(
        records, {"take": {"mrpc": {"method": "nds", "holdout": 0.8174, "metric": "holdout.accuracy"}}}, 2, None
    )
    assert "| MRPC | nDS | Acc 81.74 | 86.50 (0.71) |" in "\n".join(report_mod._take_section(tables))
    tables.recipe["take"]["mrpc"]["tied_with"] = ["vkd", "fsdi"]
    assert "| MRPC | nDS (tied with VKD, FSDI: the simpler row) | Acc 81.74 |" in "\n".join(
        report_mod._take_section(tables)
    )


def test_term_scale_measures_every_run_with_settings_its_method_takes():
    """benchmarks/term_scale.py: each measured run is a valid distill config — the memory goes only to the methods
    that read one (another method refuses it as a foreign setting)."""
    from fsdkit.config import DistillConfig, as_config

    term_scale = _load("term_scale")
    for method, options, _ in term_scale.RUNS:
        settings = term_scale.run_settings("stsb", method, options, "glue", "teacher", 8, "work/memory")
        config = as_config(DistillConfig, {**settings, "output_dir": "out"})
        assert (getattr(config.method_options, "memory", None) == "work/memory") == suite_mod.reads_memory(method)


def test_transfer_bench_splits_sst2_runs_each_row_with_and_without_transfer_text_and_reports_the_gain(tmp_path):
    """benchmarks/transfer_bench.py: the transfer file is the sentences after the labelled ones, labels dropped, named
    by both counts; every run (the teacher too) reads only the labelled sentences (max_train_samples, in its settings
    hash), the transfer rows add --transfer-file to the same settings; the report gives each row's gain and its
    one-sided Welch p-value from the runs of these counts only."""
    bench = _load("transfer_bench")
    glue = tmp_path / "glue" / "SST-2"
    glue.mkdir(parents=True)
    (glue / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"text {i}\t{i % 2}\n" for i in range(10)))
    path = bench.transfer_file(tmp_path / "glue", tmp_path / "work", 3, 4)
    assert path.name == "sst2-3-4.tsv" and path.read_text() == "sentence\ntext 3\ntext 4\ntext 5\ntext 6\n"
    with pytest.raises(SystemExit, match="exceed SST-2's 10 rows"):
        bench.transfer_file(tmp_path / "glue", tmp_path / "work", 8, 4)

    class Runner(FakeRunner):
        def distill(self, settings):  # transfer text helps by 5 points, seeds spread by 1
            result = super().distill(settings)
            gain = 0.05 if settings.get("transfer_file") else 0.0
            result["metrics"]["validation"]["accuracy"] += gain
            return result

        def majority(self, settings):
            return {"metrics": {"validation": {"accuracy": 0.5}}, "main_metric": "accuracy"}

    runs = bench.suite(tmp_path / "glue", 3, path, tmp_path / "work", 3, tmp_path / "r.jsonl")
    runs.runner = Runner()
    assert runs.teacher_settings("sst2")["max_train_samples"] == 3
    alone, more = (
        runs.student_settings("sst2", "fsdi-minilm", 1),
        runs.student_settings("sst2", "fsdi-minilm-transfer", 1),
    )
    assert more == {**alone, "transfer_file": str(path), "output_dir": more["output_dir"]}
    assert alone["max_train_samples"] == 3 and alone["method"] == "fsdi" and alone["losses"][0]["name"] == "minilm"
    assert runs.run()["ok"] == 2 + 4 * 3
    text = bench.report(runs, 3, 4)
    assert (
        "| vkd | 82.00 ± 1.00 (81.00, 82.00, 83.00) | 87.00 ± 1.00 (86.00, 87.00, 88.00) | +5.00 | 0.002 | — |  |  |"
        in text
    )
    # the control: labelled rows only, for the examples a transfer run sees (3 epochs x (3 + 4) / 3 rows); adding it
    # to the recipe leaves the hashes of the runs above as they were
    control = bench.suite(tmp_path / "glue", 3, path, tmp_path / "work", 3, tmp_path / "r.jsonl", rows=("-long",))
    control.runner = Runner()
    long = control.student_settings("sst2", "vkd-long", 1)
    assert long == {**runs.student_settings("sst2", "vkd", 1), "epochs": 7.0, "output_dir": long["output_dir"]}
    assert control.run()["ok"] == 3 * 2 and control.run()["skipped"] == 2 + 3 * 2
    text = bench.report(runs, 3, 4)
    assert "| 87.00 ± 1.00 (86.00, 87.00, 88.00) | +5.00 | 0.002 | 82.00 ± 1.00 (81.00, 82.00, 83.00) | +5.00 |" in text
    other = bench.suite(tmp_path / "glue", 5, path, tmp_path / "work", 3, tmp_path / "r.jsonl")
    assert "| vkd | — | — |  |  | — |  |  |" in bench.report(other, 5, 4)  # another labelled count: none of these
    # a smoke run's --set epochs=2: every row's epochs, the control's scaled from it (not overridden back to 2)
    smoke = bench.suite(tmp_path / "glue", 3, path, tmp_path / "w", 1, tmp_path / "s.jsonl", {"epochs": 2})
    assert [smoke.student_settings("sst2", m, 1)["epochs"] for m in ("vkd", "vkd-transfer", "vkd-long")] == [
        2,
        2,
        pytest.approx(2 * 7 / 3),
    ]
    assert smoke.teacher_settings("sst2")["epochs"] == 2  # the teacher's too


def test_a_recipe_names_its_outputs_and_v2_keeps_its_places():
    """recipe-v3 (and its table recipe) keep their runs, predictions and reports apart from v2's; a recipe without
    `outputs` (v2) keeps v2's places."""
    v2 = suite_mod.load_recipe(suite_mod.HERE / "recipe-v2.yaml")
    v3 = suite_mod.load_recipe(suite_mod.HERE / "recipe-v3.yaml")
    places = ("results", "work_dir", "predictions", "report", "curves", "analysis")
    assert [suite_mod.recipe_output(v2, p) for p in places[:3]] == [
        str(suite_mod.DEFAULT_RESULTS),
        str(suite_mod.DEFAULT_WORK_DIR),
        str(suite_mod.DEFAULT_PREDICTIONS_DIR),
    ]
    assert suite_mod.recipe_output(v2, "report") == str(suite_mod.HERE / "RESULTS.md")
    mine = {suite_mod.recipe_output(v3, p) for p in places}
    assert not mine & {suite_mod.recipe_output(v2, p) for p in places}  # nothing of v2's overwritten
    assert suite_mod.recipe_output(v3, "results") == str(suite_mod.HERE / "results" / "v3.jsonl")


def test_compress_bench_reports_the_seeds_of_the_chosen_student_only_and_its_int8_export(tmp_path, monkeypatch):
    """benchmarks/compress_bench.py's report: seeds recorded for a student chosen earlier (another trial) are not the
    chosen student's; the int8 line compares every dev metric, sizes and latencies."""
    bench = _load("compress_bench")
    out, results = tmp_path / "compress", tmp_path / "compress.jsonl"
    monkeypatch.setattr(bench, "OUT", out)
    monkeypatch.setattr(bench, "RESULTS", results)
    (out / "mrpc").mkdir(parents=True)
    metrics = {"accuracy": 0.8, "f1": 0.85}
    model = {"size_mb": 60.0, "metrics": metrics, "latency_ms_batch1": 10.0, "latency_ms_batch32": 200.0}
    quantization = {
        "split": "validation",
        "n_examples": 408,
        "metric": "f1",
        "quantization": "dynamic",
        "float": model,
        "int8": {**model, "size_mb": 15.0, "metrics": {"accuracy": 0.79, "f1": 0.84}, "latency_ms_batch1": 5.0},
        "candidates": {"dynamic": {}, "static": {}},
        "drop_points": 1.0,
        "tolerance_points": 1.0,
        "slower_than_float": False,
        "flagged": False,
    }
    chosen = {"trial": 6, "layers": [1, 2, 3, 4, 5], "start": "pretrained", "recipe": "fsdi"}
    result = {"task": "mrpc", "chosen": chosen, "teacher": {"sha256": "abc"}, "quantization": quantization}
    (out / "mrpc" / "compress.json").write_text(json.dumps(result))
    (out / "mrpc" / "front.md").write_text("# title\n\n| the front |\n")
    student = {"student_layers": [1, 2, 3, 4, 5], "student": "/models/minilm", "method": "fsdi"}
    for trial, seed, accuracy, settings, teacher in [
        (3, 1, 0.5, student, "abc"),  # a student chosen before the study had all its trials
        (6, 1, 0.78, student, "abc"),
        (6, 2, 0.80, student, None),  # recorded before records named their teacher
        (6, 3, 0.4, {**student, "student_layers": [0]}, "abc"),  # another study's trial 6: other layers
        (6, 4, 0.41, {**student, "losses": [{"name": "minilm"}]}, "abc"),  # ... another recipe
        (6, 5, 0.42, {**student, "student": "teacher"}, "abc"),  # ... another start
        (6, 6, 0.43, student, "def"),  # ... another teacher
    ]:
        record = {"kind": "seed", "task": "mrpc", "trial": trial, "seed": seed, "settings": settings}
        record |= {"teacher_sha256": teacher} if teacher else {}
        suite_mod.append_record(results, {**record, "metrics": {"validation": {"accuracy": accuracy, "f1": 0.8}}})
    bench.report()
    text = (out / "README.md").read_text()
    assert "| the front |" in text
    assert "Chosen student (trial 6: 5 layers [1, 2, 3, 4, 5], start pretrained, recipe fsdi)" in text
    assert "re-trained at seeds 1, 2: validation accuracy 79.00 ± 1.41 (78.00, 80.00); validation f1 80.00" in text
    assert not any(f"{v:.2f}" in text for v in (50, 40, 41, 42, 43))  # the other students' seeds
    assert "accuracy 80.00 → 79.00, f1 85.00 → 84.00; 60.0 → 15.0 MB; latency batch 1 10.0 → 5.0 ms" in text


def test_compress_bench_retrains_the_chosen_student_at_each_seed_once(tmp_path, monkeypatch):
    """benchmarks/compress_bench.py's seeds: the chosen trial's settings (whose own seed is replaced), each seed
    recorded with its trial at once; a rerun trains only the missing seeds, and a newly chosen student all of them."""
    import fsdkit

    bench = _load("compress_bench")
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "compress.jsonl")
    monkeypatch.setattr(bench, "HERE", tmp_path)

    def student(trial, method, layers=(1, 3, 5)):
        recipe = {"trial": trial, "layers": list(layers), "start": "teacher", "recipe": method, "teacher_sha256": "abc"}
        return recipe, {"method": method, "seed": 42, "student_layers": list(layers), "student": "teacher"}

    chosen = [student(10, "fsdi")]
    monkeypatch.setattr(bench, "chosen_student", lambda study_dir: chosen[0])
    calls = []

    def fake_distill(**options):
        calls.append(options)
        return {"metrics": {"validation": {"accuracy": 0.7 + options["seed"] / 100}}}

    monkeypatch.setattr(fsdkit, "distill", fake_distill)
    monkeypatch.setattr(fsdkit, "predict", lambda **options: None)
    study = tmp_path / "mrpc" / "study"
    bench.seed_runs("mrpc", tmp_path / "glue", tmp_path / "teacher", study, seeds=2)
    assert [(c["seed"], c["method"], c["student_layers"]) for c in calls] == [
        (1, "fsdi", [1, 3, 5]),
        (2, "fsdi", [1, 3, 5]),
    ]
    assert calls[0]["output_dir"] == str(tmp_path / "mrpc" / "seeds" / "seed1")
    bench.seed_runs("mrpc", tmp_path / "glue", tmp_path / "teacher", study, seeds=3)
    assert [c["seed"] for c in calls] == [1, 2, 3]  # only the missing seed
    chosen[0] = student(11, "vkd")
    bench.seed_runs("mrpc", tmp_path / "glue", tmp_path / "teacher", study, seeds=1)
    assert calls[-1]["method"] == "vkd" and len(calls) == 4  # another student: its own seeds
    chosen[0] = student(11, "vkd", layers=(0, 1))  # trial 11 of a new study: another student, the same number
    bench.seed_runs("mrpc", tmp_path / "glue", tmp_path / "teacher", study, seeds=1)
    assert calls[-1]["student_layers"] == [0, 1] and len(calls) == 5
    assert [(r["seed"], r["teacher_sha256"]) for r in bench.seed_records("mrpc", student(10, "fsdi")[0])] == [
        (1, "abc"),
        (2, "abc"),
        (3, "abc"),
    ]

"""prepare: load `data.source`, resize to `data.image_size`, split -> data/prepared/ + a data report."""

from neurodigits.data import load_datasets, prepare, save_prepared
from neurodigits.data.dataset import data_report
from neurodigits.io import write_json
from neurodigits.params import load_params
from stages import DATA_REPORT, PREPARED_DIR, run_stage


def main() -> None:
    params = load_params()
    prepared = prepare(load_datasets(params.data), params.data)
    report = data_report(prepared)
    save_prepared(prepared, PREPARED_DIR)
    write_json(DATA_REPORT, report)
    if params.data.task == "lines":
        print(f"prepared {report['source']}: {report['train']['n']} train / {report['test']['n']} test lines, "
              f"{len(prepared.classes)} characters, {params.data.line_height} px high"
              + "".join(f"; {s['dropped_too_narrow']} training lines dropped (too narrow for their text)"
                        for s in report["sources"] if s["dropped_too_narrow"]))
        return
    print(f"prepared {report['source']}: {report['n_train']} train / {report['n_test']} test images, "
          f"{len(prepared.classes)} classes, {params.data.image_size}x{params.data.image_size}"
          + (f"; warning: {report['train_test_duplicates']} test images also in train"
             if report["train_test_duplicates"] else ""))


if __name__ == "__main__":
    run_stage(main)

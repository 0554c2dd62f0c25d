"""Application code of `geomeld pretrain` / `geomeld finetune` that is not part of the model.

* :mod:`.statistics`: normalisation statistics travel with the data, from a dataset's `stats.json` (computed
  when absent) or a GEO-Bench task's `band_stats.json` into the processor of every checkpoint and release,
  with their source; a warning when fine-tuning data lies far from a checkpoint's statistics.
* :mod:`.collators`: rows (built-dataset rows, GEO-Bench or flat arrays with band names, processed rows) ->
  `pixel_values` / `valid_mask` / `labels` for the stock `transformers.Trainer`; :mod:`.finetuning` trains
  with that Trainer.
* :mod:`.checkpoints`: checkpoints written under a temporary name and renamed when complete, verified
  before `--resume` picks the newest good one.
"""

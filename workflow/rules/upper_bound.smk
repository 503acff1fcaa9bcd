# The upper bound (DeepLab on the ground-truth masks, results/ground_truth-s<seed>/): the methods' DeepLab rules,
# unchanged, under names of their own. Snakemake's report draws a rule once per level of the job graph, and these
# jobs, which need only the dataset, sit levels above the methods': with one name each rule was drawn twice.
# `--omit-from`, `--forcerun` and a profile's per-rule settings name both (profiles/slurm does).
use rule train_segmentation as train_segmentation_upper_bound with:
    wildcard_constraints:
        experiment=UPPER_BOUND_RUN,


use rule predict_segmentation as predict_segmentation_upper_bound with:
    wildcard_constraints:
        experiment=UPPER_BOUND_RUN,


use rule crf_predictions as crf_predictions_upper_bound with:
    wildcard_constraints:
        experiment=UPPER_BOUND_RUN,


use rule merge_predictions as merge_predictions_upper_bound with:
    wildcard_constraints:
        experiment=UPPER_BOUND_RUN,


use rule eval_segmentation as eval_segmentation_upper_bound with:
    wildcard_constraints:
        experiment=UPPER_BOUND_RUN,


use rule figures_predictions as figures_predictions_upper_bound with:
    wildcard_constraints:
        experiment=UPPER_BOUND_RUN,


use rule experiment_summary as experiment_summary_upper_bound with:
    wildcard_constraints:
        experiment=UPPER_BOUND_RUN,

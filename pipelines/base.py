"""The pipeline contract, which lives in the engine (preprocess/contract.py): re-exported here for the
pipelines of this package, which implement it."""

from preprocess.contract import BuildContext, BuildOutput, BuildSettings, Pipeline, PipelineBase, SplitSteps, copy_file

__all__ = ["BuildContext", "BuildOutput", "BuildSettings", "Pipeline", "PipelineBase", "SplitSteps", "copy_file"]

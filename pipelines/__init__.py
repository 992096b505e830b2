"""Format pipelines, registered under the entry-point group `preprocess.pipelines` by format name."""

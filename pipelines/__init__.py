"""Format pipelines, registered under the entry-point group `preprocess.pipelines` by format name.

Modules, by concern:
- base: what a pipeline is and what the engine hands it (Pipeline, BuildContext, BuildSettings, BuildOutput).
- alignments: SAM/BAM (ALIGNMENTS), and what every alignment pipeline shares: quickcheck, the BAI/CSI choice,
  records through the index, unreachable reads. alignments_split: one BAM sorted across workers. cram: CRAM.
- intervals: the VCF/BED/narrowPeak/broadPeak/GFF3 formats and build_intervals, which picks a text's path;
  streaming: the streaming pass (scripts/intervals.sh, scripts/validate.awk) and its error diagnosis;
  columnar: the in-memory pass; tabix_index: TBI/CSI, writing and reading the index; interval_checks: the
  output's checks. gtf and bigbed convert to GFF3 and BED, then build as those.
- bgzf: compression sniffing, text lines, the one BGZF block walker. passthrough: CSV, TSV, bigWig as they are.
- pins: the sha256 each pipeline version makes of the reference inputs.
"""

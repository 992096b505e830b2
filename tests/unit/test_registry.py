import pytest

from preprocess import registry
from preprocess.errors import InputError


@pytest.mark.parametrize("name, fmt", [
    ("x.sam", "SAM"), ("X.BAM", "BAM"), ("calls.vcf.gz", "VCF"), ("calls.vcf.bgz", "VCF"), ("a.bed", "BED"),
    ("p.narrowPeak.gz", "narrowPeak"), ("p.broadpeak", "broadPeak"), ("g.gff3.gz", "GFF3"), ("g.gtf", "GTF"),
    ("t.bb", "bigBed"), ("t.bigWig", "bigWig"), ("t.csv", "CSV"), ("t.tsv", "TSV"),
])
def test_format_is_inferred_from_the_file_name(name, fmt):
    assert registry.infer_format(name) == fmt


@pytest.mark.parametrize("given, canonical", [("bam", "BAM"), ("NARROWPEAK", "narrowPeak"), ("BigBed", "bigBed")])
def test_formats_match_case_insensitively(given, canonical):
    assert registry.canonical_format(given) == canonical


def test_unknown_format_is_an_input_error_listing_the_known_ones():
    with pytest.raises(InputError, match="unknown format 'fast5'.*bam"):
        registry.pipeline_for("fast5")
    with pytest.raises(InputError, match="cannot infer a format"):
        registry.infer_format("notes.docx")


def test_every_pipeline_names_itself_and_its_stage():
    for fmt in registry.formats():
        pipeline = registry.pipeline_for(fmt)
        assert pipeline.name and pipeline.version and pipeline.stage
        assert fmt in pipeline.formats

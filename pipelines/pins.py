"""What each pipeline version promises: the sha256 of every artifact it makes of a fixed input.

A key names one set of bytes, so a pipeline's output may change only together with its version.
`tests/integration/test_pins.py` builds each pipeline's reference input (tests/samples.py, fixed
seeds) and compares every artifact with the entry for the pipeline's current version here; a change
of bytes fails until the version is bumped and its entry added in the same commit (the failure
prints the entry to paste). Old entries stay, as the record of what each version made.

The bytes also depend on the tools: TOOLS is what the worker image installs (deploy/Dockerfile,
Debian bookworm packages, as CI); the test and `doctor` compare the machine's tools with it.
"""

from __future__ import annotations

# The first line each tool prints for --version.
TOOLS: dict[str, str] = {
    "samtools": "samtools 1.16.1",
    "tabix": "tabix (htslib) 1.16",
    "bgzip": "bgzip (htslib) 1.16",
    "gffread": "0.12.7",
    "sort": "sort (GNU coreutils) 9.1",
}

# (pipeline name, version) -> artifact name -> sha256 of the reference build.
OUTPUTS: dict[tuple[str, str], dict[str, str]] = {
    ('alignments', '1'): {
        "bai:sorted.bam": "5661dc83d1d6d93183f30432e6544e5872e106fa0d0ab62f51875545ec62a69d",
        "bai:sorted.bam.bai": "73db621934522a0989c357701280b75e06ecd143438ca0423e6cf5d2afa5f9da",
        "csi:sorted.bam": "2b7b80415fc812ac6d75ca6c7ea968e48601bc10e728b9408dfcdd44c941f3e5",
        "csi:sorted.bam.csi": "7a5f95cf772da5d823cc05ca4f1db3ab7844850a72ccbaaadb097b0f8135ffcd"
    },
    ('alignments', '2'): {
        "bai:sorted.bam": "5661dc83d1d6d93183f30432e6544e5872e106fa0d0ab62f51875545ec62a69d",
        "bai:sorted.bam.bai": "73db621934522a0989c357701280b75e06ecd143438ca0423e6cf5d2afa5f9da",
        "csi:sorted.bam": "2b7b80415fc812ac6d75ca6c7ea968e48601bc10e728b9408dfcdd44c941f3e5",
        "csi:sorted.bam.csi": "7a5f95cf772da5d823cc05ca4f1db3ab7844850a72ccbaaadb097b0f8135ffcd",
        "sorted-unlabelled:sorted.bam": "250ec6b9847fdd13ea96d407052ae96fb2f6aef22638c6586f12b307c8ef22c0",
        "sorted-unlabelled:sorted.bam.bai": "aaddf6fd66eca3591a3b92734a231a3db050687dd8f15495069cc039e6010967",
        "sorted:sorted.bam": "e124b5d2c1fd8f91c6ee45bc62fa2d87aa8c1b175b1aa42d6f7e9b37752e0d25",
        "sorted:sorted.bam.bai": "ace6c8664890f2f3c82b7d4f889eb30b470fe17a59038a508d4d9e418a125ea5"
    },
    ('alignments', '3'): {  # the parted layout (a BAM over part-size, here 20000 bytes: 3 parts); the rest as 2
        "bai:sorted.bam": "5661dc83d1d6d93183f30432e6544e5872e106fa0d0ab62f51875545ec62a69d",
        "bai:sorted.bam.bai": "73db621934522a0989c357701280b75e06ecd143438ca0423e6cf5d2afa5f9da",
        "csi:sorted.bam": "2b7b80415fc812ac6d75ca6c7ea968e48601bc10e728b9408dfcdd44c941f3e5",
        "csi:sorted.bam.csi": "7a5f95cf772da5d823cc05ca4f1db3ab7844850a72ccbaaadb097b0f8135ffcd",
        "parted:sorted.bam": "7b53a5aaddd85f6acf9ecad4b65f96e24ec74945abf7772fe8ace2d390b72b02",
        "parted:sorted.bam.bai": "6aba0369e800089171b5a69515238442a199f8fcbf2f2f6f1b68fecc656504de",
        "sorted-unlabelled:sorted.bam": "250ec6b9847fdd13ea96d407052ae96fb2f6aef22638c6586f12b307c8ef22c0",
        "sorted-unlabelled:sorted.bam.bai": "aaddf6fd66eca3591a3b92734a231a3db050687dd8f15495069cc039e6010967",
        "sorted:sorted.bam": "e124b5d2c1fd8f91c6ee45bc62fa2d87aa8c1b175b1aa42d6f7e9b37752e0d25",
        "sorted:sorted.bam.bai": "ace6c8664890f2f3c82b7d4f889eb30b470fe17a59038a508d4d9e418a125ea5"
    },
    ('bed', '2'): {
        "tbi:sorted.bed.gz": "2f2e610cc28cd01f83b1fadf391ce068b5ed7c59902bf9291d83cfd27b4b5f9d",
        "tbi:sorted.bed.gz.tbi": "6162a67fa1592e3e09db4c4668f9cdc4b3fabd9a855885a4b257806dea547c87"
    },
    ('bed', '3'): {
        "tbi:sorted.bed.gz": "2f2e610cc28cd01f83b1fadf391ce068b5ed7c59902bf9291d83cfd27b4b5f9d",
        "tbi:sorted.bed.gz.tbi": "6162a67fa1592e3e09db4c4668f9cdc4b3fabd9a855885a4b257806dea547c87"
    },
    ('bigbed', '2'): {
        "tbi:sorted.bed.gz": "9093d761d25f6d3aeeb328d6a7e5522fcf229d54adee8bf54fc0386c98cb0c48",
        "tbi:sorted.bed.gz.tbi": "5582a0556061236ed715e7215629b88c89a38d7155cd5dec06b01f9b87bf8272"
    },
    ('bigwig', '2'): {
        "copy:data.bw": "0f9a560064c4e04183ba7865d6bcd4de2f398cd7ece70fe03be502185a3045b1"
    },
    ('broadpeak', '2'): {
        "tbi:sorted.broadPeak.gz": "ea170c356053ed7f7b5c26cfe272ea5b3ff837aebe11ae86c0991116bd512c59",
        "tbi:sorted.broadPeak.gz.tbi": "0f63a19535ad5aa9b40e76e587815f878c957371eab12fdb7e4d9e8612368fe8"
    },
    ('broadpeak', '3'): {
        "tbi:sorted.broadPeak.gz": "ea170c356053ed7f7b5c26cfe272ea5b3ff837aebe11ae86c0991116bd512c59",
        "tbi:sorted.broadPeak.gz.tbi": "0f63a19535ad5aa9b40e76e587815f878c957371eab12fdb7e4d9e8612368fe8"
    },
    ('csv', '2'): {
        "copy:data.csv": "bc3946a8d2261be3af86c7bf2e00e72e3c7c86068c30cce1de249edcff39a336"
    },
    ('cram', '1'): {
        "embedded:sorted.cram": "69431443299217d9a2301e67473d7fd86ef578b181e80514acd98a35de5285e1",
        "embedded:sorted.cram.crai": "cd4e1fe8eb176a87a7f1fba82e1ed41f9dbd613371b0b3069a65d57ece5ab61b",
        "external:sorted.cram": "00fcd761e572c3b166c2a67c9d15bd12bf38ef8c3f16d4d9f462f9ca0e6e248e",
        "external:sorted.cram.crai": "6a610b61ee8d6cf14763c01cba4061fb14632ad2bd7fdf959b85955ce61f5e58"
    },
    ('cram', '2'): {
        "embedded:sorted.cram": "60249a65507d77f220b238df0ffdc594c48db32168f7cf3003f22fe0d7c67251",
        "embedded:sorted.cram.crai": "19d2fd906b8216dbb9c8154321647fde8acda0696e412a0293ff1a5ff45c4275",
        "external:sorted.cram": "00fcd761e572c3b166c2a67c9d15bd12bf38ef8c3f16d4d9f462f9ca0e6e248e",
        "external:sorted.cram.crai": "6a610b61ee8d6cf14763c01cba4061fb14632ad2bd7fdf959b85955ce61f5e58"
    },
    ('cram', '3'): {
        "embedded:sorted.cram": "b179af2f7b8e31a40add7dd4ae50b4e6955f229e9ebaf30624dcccd3619cf404",
        "embedded:sorted.cram.crai": "677e108ec93cb405ee9774e168506718ca08e048ae042b9094b64172ed8c4135",
        "external:sorted.cram": "7600bda5f229b69dad9e4635f1f79ce33605b1375843a8f75d7c8a91074b6c7c",
        "external:sorted.cram.crai": "6a23372dad15d6c2c651de7fb314ae277e7cc77a2927f721f005920f2facaafa"
    },
    ('gff3', '2'): {
        "tbi:sorted.gff3.gz": "2c15413b636e89316614607d922d2f7c5bd425c093623298ef3a684fc605e234",
        "tbi:sorted.gff3.gz.tbi": "801472a9c24c42a1e2f3f6f7be01d1c9a64c5c83a6534f9179d9b85d8337e8c3"
    },
    ('gff3', '3'): {
        "tbi:sorted.gff3.gz": "2c15413b636e89316614607d922d2f7c5bd425c093623298ef3a684fc605e234",
        "tbi:sorted.gff3.gz.tbi": "801472a9c24c42a1e2f3f6f7be01d1c9a64c5c83a6534f9179d9b85d8337e8c3"
    },
    ('gtf', '2'): {
        "tbi:sorted.gff3.gz": "fcf84eb5e2acc775ebb370326eb0ec7ec48387460d88181586faad2b84742f1d",
        "tbi:sorted.gff3.gz.tbi": "478c125844db439e9430f920595e9ac0eedb0856e9811afd9d76bca6ef7f4c4b"
    },
    ('narrowpeak', '2'): {
        "tbi:sorted.narrowPeak.gz": "848c13ad3ca468f7b4c334753549a6cdd7d7d4e14989b983e5c1a68c1337ad62",
        "tbi:sorted.narrowPeak.gz.tbi": "87d986d200f083b73d19514cebf96261ab38040607ff3bbf8e538e56fbbb0dac"
    },
    ('narrowpeak', '3'): {
        "tbi:sorted.narrowPeak.gz": "848c13ad3ca468f7b4c334753549a6cdd7d7d4e14989b983e5c1a68c1337ad62",
        "tbi:sorted.narrowPeak.gz.tbi": "87d986d200f083b73d19514cebf96261ab38040607ff3bbf8e538e56fbbb0dac"
    },
    ('tsv', '2'): {
        "copy:data.tsv": "8f42a801f132ea0de0dac5e6017102f8a5c8e172e01704b859be4d1cbdacb3d9"
    },
    ('vcf', '2'): {
        "csi:sorted.vcf.gz": "4e1ef5e3c0fb04418f6378591009917837c532459f81fc137e20f4adfd749cf5",
        "csi:sorted.vcf.gz.csi": "9bf79d187415ed7fce723f9ad7b5542c296bda154d9c9041cb56e76662eda826",
        "tbi:sorted.vcf.gz": "4342c9624e4f5cdde152ebd68a0a0c9a746f76d23b6fd4644e19d79fe49d1fbf",
        "tbi:sorted.vcf.gz.tbi": "6654341946f698c36a1a4ae274ded3b83aab76e583cf00518231344f3c4e9baf"
    },
    ('vcf', '3'): {
        "csi:sorted.vcf.gz": "4e1ef5e3c0fb04418f6378591009917837c532459f81fc137e20f4adfd749cf5",
        "csi:sorted.vcf.gz.csi": "9bf79d187415ed7fce723f9ad7b5542c296bda154d9c9041cb56e76662eda826",
        "tbi:sorted.vcf.gz": "4342c9624e4f5cdde152ebd68a0a0c9a746f76d23b6fd4644e19d79fe49d1fbf",
        "tbi:sorted.vcf.gz.tbi": "6654341946f698c36a1a4ae274ded3b83aab76e583cf00518231344f3c4e9baf"
    },
}

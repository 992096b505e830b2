// Read artifacts the way JBrowse and IGV.js do: @gmod/bam, @gmod/cram and @gmod/tabix over HTTP
// range requests (generic-filehandle2's RemoteFile, i.e. fetch), then count what a query of each
// whole reference sequence returns.
//
//   NODE_PATH=.tools/node_modules node tests/browser_readers.cjs tracks.json
//
// tracks.json: [{"id", "kind": "bam"|"cram"|"tabix", "data": url, "index": url,
//                "index_kind": "bai"|"csi"|"crai"|"tbi", "fasta": url, "fai": url}]  (fasta, fai: CRAM only)
// stdout: {"counts": {"<id>": {"<reference name>": records, ...}, ...}, "requests": {"ranged": n, "whole": [file names]}}
'use strict'

const fs = require('fs')
const { RemoteFile } = require('generic-filehandle2')
const { BamFile } = require('@gmod/bam')
const { IndexedCramFile, CraiIndex } = require('@gmod/cram')
const { TabixIndexedFile } = require('@gmod/tabix')
const { IndexedFasta } = require('@gmod/indexedfasta')

// Every HTTP request, counted by whether it asked for a byte range: browsers must not download whole files.
const requests = { ranged: 0, whole: [] }
const countingFetch = (input, init) => {
  const headers = (init && init.headers) || {}
  if (headers.range || headers.Range) requests.ranged += 1
  else requests.whole.push(String(input).split('?')[0].split('/').pop())  // the file name only
  return fetch(input, init)
}
const remote = url => new RemoteFile(url, { fetch: countingFetch })

async function countBam(track) {
  const index = track.index_kind === 'csi' ? { csiFilehandle: remote(track.index) } : { baiFilehandle: remote(track.index) }
  const bam = new BamFile({ bamFilehandle: remote(track.data), ...index })
  await bam.getHeader()
  const counts = {}
  for (const { refName, length } of bam.indexToChr) {
    counts[refName] = (await bam.getRecordsForRange(refName, 0, length)).length
  }
  return counts
}

async function countCram(track) {
  const names = []
  const fasta = track.fasta ? new IndexedFasta({ fasta: remote(track.fasta), fai: remote(track.fai) }) : null
  // a browser always has the assembly's FASTA; a CRAM that needs none (no_ref) is read without it
  const seqFetch = fasta ? async (id, start, end) => fasta.getSequence(names[id], start - 1, end) : undefined
  const cram = new IndexedCramFile({
    cramFilehandle: remote(track.data),
    index: new CraiIndex({ filehandle: remote(track.index) }),
    seqFetch,
    checkSequenceMD5: true,
  })
  const header = await cram.cram.getSamHeader()
  const lengths = []
  for (const line of header.filter(l => l.tag === 'SQ')) {
    const tag = name => line.data.find(item => item.tag === name).value
    names.push(tag('SN'))
    lengths.push(Number(tag('LN')))
  }
  const counts = {}
  for (let id = 0; id < names.length; id++) {
    const records = await cram.getRecordsForRange(id, 1, lengths[id])
    for (const record of records) record.getReadBases()  // decode every base: needs the reference
    counts[names[id]] = records.length
  }
  return counts
}

async function countTabix(track) {
  const index = track.index_kind === 'csi' ? { csiFilehandle: remote(track.index) } : { tbiFilehandle: remote(track.index) }
  const file = new TabixIndexedFile({ filehandle: remote(track.data), ...index })
  const counts = {}
  for (const name of await file.getReferenceSequenceNames()) {
    let n = 0
    await file.getLines(name, 0, undefined, () => { n += 1 })
    counts[name] = n
  }
  return counts
}

async function main() {
  const tracks = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
  const readers = { bam: countBam, cram: countCram, tabix: countTabix }
  const counts = {}
  for (const track of tracks) {
    counts[track.id] = await readers[track.kind](track)
  }
  process.stdout.write(JSON.stringify({ counts, requests }))
}

main().catch(error => {
  // the message may carry a signed URL: print it without query strings
  console.error(String(error && error.stack || error).replace(/\?[^\s'"]*/g, '?…'))
  process.exit(1)
})

import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { createLineBatch, type LineSink } from '../../src/observability/line-batch.js'
import { tsxLoader } from '../support/process.js'
import { sleep } from '../../src/time.js'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** A sink that keeps what it is given, chunk by chunk. */
function recordingSink (): LineSink & { chunks: string[], syncFlushes: number } {
  return {
    chunks: [],
    syncFlushes: 0,
    write (chunk) { this.chunks.push(chunk); return true },
    flush (callback) { callback?.() },
    flushSync () { this.syncFlushes++ }
  }
}

describe('log lines written in batches', () => {
  it('hands lines over in one chunk at the interval, not one write per line', async () => {
    const sink = recordingSink()
    const batch = createLineBatch(sink, { batchChars: 1_000_000, flushIntervalMs: 50 })
    try {
      for (let line = 0; line < 20; line++) batch.write(`{"line":${line}}\n`)
      expect(sink.chunks).toEqual([])
      await sleep(130)
      expect(sink.chunks).toHaveLength(1)
      expect(sink.chunks[0]?.split('\n').filter(Boolean)).toHaveLength(20)
    } finally {
      batch.close()
    }
  })

  it('hands lines over at once when a batch is full, and on flush', () => {
    const sink = recordingSink()
    const batch = createLineBatch(sink, { batchChars: 100, flushIntervalMs: 60_000 })
    try {
      const line = `${'x'.repeat(39)}\n`
      batch.write(line)
      batch.write(line)
      expect(sink.chunks).toEqual([])
      batch.write(line)
      expect(sink.chunks).toEqual([line.repeat(3)])
      batch.write('last\n')
      batch.flushSync()
      expect(sink.chunks.at(-1)).toBe('last\n')
      expect(sink.syncFlushes).toBe(1)
    } finally {
      batch.close()
    }
  })

  it('loses no line when the process exits right after writing (stdout through pino\'s destination)', () => {
    const script = `
      import { batchedStdout } from './src/observability/logger.ts'
      const out = batchedStdout()
      for (let line = 0; line < 500; line++) out.write(JSON.stringify({ line }) + '\\n')
      process.exit(0)
    `
    const child = spawnSync(process.execPath, ['--import', tsxLoader, '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 20_000 })
    expect(child.status, child.stderr).toBe(0)
    const lines = child.stdout.split('\n').filter(Boolean).map(line => (JSON.parse(line) as { line: number }).line)
    expect(lines).toEqual(Array.from({ length: 500 }, (_, index) => index))
  })
})

import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { describe, expect, it } from 'vitest'
import { useCleanup } from '../support/fixtures.js'
import { startBroker, type BrokerProcess } from '../support/process.js'
import { sleep } from '../../src/time.js'

interface Outcome {
  /** Sent after SIGTERM. */
  afterSignal: boolean
  status?: number
  contentType?: string
  connection?: string
  error?: string
}

/** A caller that reuses keep-alive connections, asking again as soon as each answer arrives. */
async function callerLoop (url: string, agent: Agent, signalled: () => boolean, stop: () => boolean, outcomes: Outcome[]): Promise<void> {
  while (!stop()) {
    const afterSignal = signalled()
    try {
      const response = await request(url, { dispatcher: agent, headers: { authorization: 'Bearer example-api-key-change-me' } })
      await response.body.text()
      outcomes.push({ afterSignal, status: response.statusCode, contentType: String(response.headers['content-type']), connection: String(response.headers.connection) })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).name
      outcomes.push({ afterSignal, error: code })
      // Refused: the listener is gone. Ask again a little later, as a caller with a retry would.
      await sleep(20)
    }
  }
}

describe('SIGTERM with callers on keep-alive connections (the broker process)', () => {
  const cleanup = useCleanup()

  it('answers every request or refuses a new connection cleanly: no reset mid-request', async () => {
    const broker = cleanup.add(await startBroker({}, { cwd: mkdtempSync(join(tmpdir(), 'cb-cwd-')) }), async (running: BrokerProcess) => { await running.stop('SIGKILL') })
    const agent = cleanup.add(new Agent({ connections: 8, keepAliveTimeout: 30_000 }), async (a: Agent) => { await a.close() })
    const url = `${broker.url}/v1/credentials/kivra-sandbox/token?min_ttl=30`
    const outcomes: Outcome[] = []
    let signalled = false
    let stopAt = Infinity
    const loops = Array.from({ length: 8 }, async () => { await callerLoop(url, agent, () => signalled, () => Date.now() > stopAt, outcomes) })

    await sleep(1500)
    signalled = true
    broker.child.kill('SIGTERM')
    const exit = await broker.exited
    stopAt = Date.now() + 300
    await Promise.all(loops)

    const before = outcomes.filter(outcome => !outcome.afterSignal)
    const after = outcomes.filter(outcome => outcome.afterSignal)
    // The only failure allowed is a refused new connection once the listener has stopped.
    expect(after.filter(outcome => outcome.error !== undefined && outcome.error !== 'ECONNREFUSED').map(outcome => outcome.error)).toEqual([])
    expect(exit.code).toBe(0)
    expect(before.length).toBeGreaterThan(50)
    expect(before.every(outcome => outcome.status === 200)).toBe(true)
    // Answers during shutdown are real answers (served, with Connection: close) or problem+json.
    for (const outcome of after.filter(o => o.status !== undefined)) {
      expect(outcome.status === 200 || outcome.contentType?.startsWith('application/problem+json') === true, JSON.stringify(outcome)).toBe(true)
    }
    // Each connection open when shutdown began carries one more answer, with Connection: close. That request
    // may have been sent before the signal and read after it (a busy machine delivers the signal first).
    expect(outcomes.some(outcome => outcome.status !== undefined && outcome.connection === 'close')).toBe(true)
    expect(before.filter(outcome => outcome.error !== undefined)).toEqual([])
  }, 40_000)
})

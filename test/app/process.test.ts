import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { useCleanup } from '../support/fixtures.js'
import { runBroker, startBroker, type BrokerProcess } from '../support/process.js'

/** An empty directory, so no ./credentials.yaml is found and the embedded defaults apply. */
const emptyDir = (): string => mkdtempSync(join(tmpdir(), 'cb-cwd-'))

describe('the broker process (npm start)', () => {
  const cleanup = useCleanup()
  const kill = async (broker: Pick<BrokerProcess, 'stop'>): Promise<void> => { await broker.stop('SIGKILL') }

  it('starts on its embedded defaults with no environment, and says so', async () => {
    const running = cleanup.add(await startBroker({}, { cwd: emptyDir() }), kill)
    const health = await fetch(`${running.url}/healthz`)
    expect(health.status).toBe(200)
    expect(await health.json()).toEqual({ status: 'ok' })

    const ready = await fetch(`${running.url}/readyz`)
    expect(ready.status).toBe(200)
    const body = await ready.json() as { status: string, checks: Record<string, Record<string, unknown>> }
    expect(body.status).toBe('ready')
    expect(body.checks.store).toMatchObject({ kind: 'memory', state: 'up', embedded: true })
    expect(body.checks.secrets).toMatchObject({ kind: 'file', state: 'ok', embedded: true })
    expect(body.checks.config).toMatchObject({ credentials: 4, example_credentials: true })

    const warnings = running.stdout.map(line => JSON.parse(line) as { level: number, msg: string }).filter(entry => entry.level === 40).map(entry => entry.msg)
    expect(warnings).toEqual(expect.arrayContaining([
      expect.stringMatching(/no REDIS_URL/),
      expect.stringMatching(/local file/),
      expect.stringMatching(/example credentials/)
    ]))
  })

  it('stops on SIGTERM with exit code 0', async () => {
    const running = cleanup.add(await startBroker({}, { cwd: emptyDir() }), kill)
    const exit = await running.stop('SIGTERM')
    expect(exit.code).toBe(0)
  })

  it('refuses embedded defaults in production: exit 78, one line per problem, no stack trace', async () => {
    const process = cleanup.add(runBroker({ NODE_ENV: 'production' }, { cwd: emptyDir() }), kill)
    const exit = await process.exited
    expect(exit.code).toBe(78)
    expect(process.stderr[0]).toBe('credential-broker: invalid configuration (4 problems)')
    expect(process.stderr.slice(1).map(line => line.trim().split(':')[0])).toEqual(['CREDENTIALS_FILE', 'REDIS_URL', 'VAULT_ADDR', 'TOKEN_ENCRYPTION_KEY'])
    expect(process.stderr.join('\n')).not.toMatch(/\n\s+at /)
  })

  it('exits 78 naming an invalid variable', async () => {
    const process = cleanup.add(runBroker({ PORT: 'http' }, { cwd: emptyDir() }), kill)
    expect((await process.exited).code).toBe(78)
    expect(process.stderr).toEqual(['credential-broker: invalid configuration (1 problem)', '  PORT: expected a port number'])
  })
})

import { describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { tempFile } from '../support/app.js'
import { useCleanup } from '../support/fixtures.js'
import { captureLogs } from '../support/logs.js'

describe('the per-request logger', () => {
  const cleanup = useCleanup()

  it('is created only for requests that log', async () => {
    const logs = captureLogs('info')
    const logger = logs.log
    let requestChildren = 0
    const child = logger.child.bind(logger)
    logger.child = ((bindings: Record<string, unknown>, options?: object) => {
      if ('reqId' in bindings) requestChildren += 1
      return child(bindings, options)
    }) as typeof logger.child
    const config = loadConfig({ CREDENTIALS_FILE: tempFile('c.yaml', 'credentials: []'), SECRETS_FILE: tempFile('s.json', '{}') })
    const app = cleanup.add(await buildApp(config, { logger }))
    app.get('/boom', async () => { throw new Error('boom') })
    await app.ready()

    for (let i = 0; i < 5; i++) expect((await app.inject('/healthz')).statusCode).toBe(200)
    expect(requestChildren).toBe(0)

    expect((await app.inject('/boom')).statusCode).toBe(500) // the problem handler logs: a child is made
    expect(requestChildren).toBe(1)
    expect(logs.entries()).toContainEqual(expect.objectContaining({ msg: 'unhandled error', reqId: expect.any(String) }))
  })
})

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bearer, keys, startApiWorld, type ApiWorld } from '../api/world.js'
import { sleep } from '../../src/time.js'
import { duplicateKeys } from '../support/json-keys.js'

describe('audit trail', () => {
  let world: ApiWorld
  const audits = (): Array<Record<string, unknown>> => world.testApp.logs.entries().filter(entry => entry.audit === true)

  beforeAll(async () => {
    // LOG_LEVEL=warn: the main log says nothing at info, the audit trail still does.
    world = await startApiWorld({ logLevel: 'warn', env: { RATE_LIMIT_PER_MINUTE: '3' } })
    const left = 60_000 - (Date.now() % 60_000)
    if (left < 5000) await sleep(left + 50)
  })
  afterAll(async () => { await world.close() })

  it('is kept at LOG_LEVEL=warn: one line per token, with caller, credential, outcome, fingerprint, route, client', async () => {
    const response = await world.testApp.app.inject({ url: '/v1/credentials/kivra/token', headers: bearer(keys.service) })
    expect(response.statusCode).toBe(200)
    const lines = audits().filter(entry => entry.reqId === response.headers['x-request-id'])
    expect(lines).toEqual([expect.objectContaining({ msg: 'token issued', caller: 'service', credentialId: 'kivra', outcome: 'issued', route: 'GET /v1/credentials/:id/token', client: '127.0.0.1', fingerprint: expect.stringMatching(/^[A-Za-z0-9_-]{12}$/) as string })])
    expect(world.testApp.logs.entries().some(entry => entry.level === 30 && entry.audit !== true)).toBe(false)
  })

  it.each([
    ['401 without a key', {}, 'kivra', 401, 'CB_UNAUTHENTICATED', 'anonymous'],
    ['403 for a caller not listed', bearer(keys.other), 'kivra', 403, 'CB_FORBIDDEN', 'other']
  ] as const)('writes one line per denial: %s', async (_name, headers, id, status, code, caller) => {
    const response = await world.testApp.app.inject({ url: `/v1/credentials/${id}/token`, headers })
    expect(response.statusCode).toBe(status)
    const lines = audits().filter(entry => entry.reqId === response.headers['x-request-id'])
    expect(lines).toEqual([expect.objectContaining({ msg: 'request denied', outcome: 'denied', code, status, caller, credentialId: id, route: 'GET /v1/credentials/:id/token', client: '127.0.0.1' })])
  })

  it('writes one line per 429, with its code', async () => {
    const statuses: number[] = []
    let last = ''
    for (let i = 0; i < 4; i++) {
      const response = await world.testApp.app.inject({ url: '/v1/credentials', headers: bearer(keys.frontend) })
      statuses.push(response.statusCode)
      last = String(response.headers['x-request-id'])
    }
    expect(statuses).toEqual([200, 200, 200, 429])
    expect(audits().filter(entry => entry.reqId === last)).toEqual([expect.objectContaining({ outcome: 'denied', code: 'CB_RATE_LIMITED', status: 429, caller: 'frontend', route: 'GET /v1/credentials' })])
  })

  it('never carries a token and no line has a key twice', () => {
    for (const token of world.issuedTokens()) expect(world.testApp.logs.text()).not.toContain(token)
    for (const line of world.testApp.logs.lines) expect(duplicateKeys(line), line).toEqual([])
    expect(duplicateKeys('{"a":1,"b":{"a":2},"a":3}')).toEqual(['a'])
  })
})

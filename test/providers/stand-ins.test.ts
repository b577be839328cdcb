/**
 * The stand-ins are reused by the broker tests and the demo, so they are checked here on their own, with
 * raw HTTP: they must hold callers to the documented contract, not to whatever our adapters send.
 */
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fixedNow } from '../support/providers/context.js'
import { startProviderStandIns, type ProviderStandIns } from '../support/providers/index.js'

interface Answer { status: number, headers: Record<string, string | string[] | undefined>, json: Record<string, unknown> }

async function call (url: string, options: { method?: 'GET' | 'POST', headers?: Record<string, string>, body?: string } = {}): Promise<Answer> {
  const response = await request(url, { method: options.method ?? 'POST', headers: options.headers, body: options.body })
  const text = await response.body.text()
  return { status: response.statusCode, headers: response.headers, json: JSON.parse(text) as Record<string, unknown> }
}

const basic = (id: string, secret: string): string => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`
const form = 'application/x-www-form-urlencoded'

describe('provider stand-ins', () => {
  let now = fixedNow
  let standIns: ProviderStandIns

  beforeAll(async () => { standIns = await startProviderStandIns({ now: () => now }) })
  afterAll(async () => { await standIns.close() })

  it('all listen on 127.0.0.1', () => {
    for (const standIn of standIns.all) expect(standIn.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
  })

  describe('kivra', () => {
    it('mints for Basic client_id:client_secret and a client_credentials form, with x-correlation-id', async () => {
      const { kivra } = standIns
      const answer = await call(`${kivra.url}/v1/auth`, { headers: { authorization: basic(String(kivra.secret.client_id), String(kivra.secret.client_secret)), 'content-type': form }, body: 'grant_type=client_credentials&scope=kivra.v1.tenant.t1.*' })
      expect(answer.status).toBe(200)
      expect(answer.json).toMatchObject({ token_type: 'bearer', expires_in: 28_800, scope: 'kivra.v1.tenant.t1.*' })
      expect(answer.headers['x-correlation-id']).toBeTypeOf('string')
      expect(kivra.mints).toBe(1)
    })

    it('rejects a pair with a trailing newline and a JSON body, with Kivra error bodies', async () => {
      const { kivra } = standIns
      const newline = await call(`${kivra.url}/v1/auth`, { headers: { authorization: basic(String(kivra.secret.client_id), `${kivra.secret.client_secret}\n`), 'content-type': form }, body: 'grant_type=client_credentials' })
      expect(newline).toMatchObject({ status: 401, json: { code: 40104, short_message: 'invalid client' } })
      expect(newline.headers['x-error-code']).toBe('40104')
      const json = await call(`${kivra.url}/v1/auth`, { headers: { authorization: basic(String(kivra.secret.client_id), String(kivra.secret.client_secret)), 'content-type': 'application/json' }, body: '{"grant_type":"client_credentials"}' })
      expect(json.status).toBe(400)
      expect(json.headers['x-correlation-id']).toBeTypeOf('string')
    })
  })

  describe('kigo', () => {
    it('needs JSON { api_key, partner_id }', async () => {
      const { kigo } = standIns
      const formBody = await call(`${kigo.url}/api/v1/auth/sessions`, { headers: { 'content-type': form }, body: `api_key=${kigo.secret.api_key}&partner_id=${kigo.secret.partner_id}` })
      expect(formBody).toMatchObject({ status: 400, json: { message: expect.any(String) } })
      const ok = await call(`${kigo.url}/api/v1/auth/sessions`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify(kigo.secret) })
      expect(ok.status).toBe(200)
      expect(Object.keys(ok.json)).toEqual(['token'])
    })
  })

  describe('klavi', () => {
    it('refreshes only tokens it issued that have not expired on its clock', async () => {
      const { klavi } = standIns
      const minted = await call(`${klavi.url}/data/v1/auth`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify(klavi.secret) })
      const token = String(minted.json.accessToken)
      expect(minted.json.expireIn).toBe(1800)

      const refreshed = await call(`${klavi.url}/data/v1/refresh`, { method: 'GET', headers: { authorization: `Bearer ${token}` } })
      expect(refreshed.status).toBe(200)
      const unknown = await call(`${klavi.url}/data/v1/refresh`, { method: 'GET', headers: { authorization: 'Bearer forged' } })
      expect(unknown).toMatchObject({ status: 401, json: { statusCode: 401, error: 'Unauthorized' } })
      now = fixedNow + 1800_000
      const expired = await call(`${klavi.url}/data/v1/refresh`, { method: 'GET', headers: { authorization: `Bearer ${token}` } })
      expect(expired.status).toBe(401)
      now = fixedNow
      expect({ mints: klavi.mints, refreshes: klavi.refreshes, refreshAttempts: klavi.refreshAttempts }).toEqual({ mints: 1, refreshes: 1, refreshAttempts: 3 })
    })

    it('answers bad credentials with the documented body', async () => {
      const { klavi } = standIns
      const answer = await call(`${klavi.url}/data/v1/auth`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ accessKey: 'a', secretKey: 'b' }) })
      expect(answer).toMatchObject({ status: 401, json: { statusCode: 401, error: 'Unauthorized', message: 'Invalid accessKey or secretKey' } })
    })
  })

  describe('faults', () => {
    it('apply `times` times, to the chosen endpoint only, and count as attempts', async () => {
      const { klavi } = standIns
      const attempts = klavi.mintAttempts
      const mints = klavi.mints
      klavi.setFault({ kind: 'rate-limit', retryAfter: '9' }, { endpoint: 'mint', times: 2 })
      const mint = async (): Promise<Answer> => await call(`${klavi.url}/data/v1/auth`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify(klavi.secret) })
      const first = await mint()
      expect(first.status).toBe(429)
      expect(first.headers['retry-after']).toBe('9')
      expect((await mint()).status).toBe(429)
      expect((await mint()).status).toBe(200)
      expect(klavi.mintAttempts).toBe(attempts + 3)
      expect(klavi.mints).toBe(mints + 1)
    })

    it('server-error uses the provider error body; clearFaults restores the contract', async () => {
      const { oauth2 } = standIns
      oauth2.setFault({ kind: 'server-error', status: 502 })
      const body = `grant_type=client_credentials&client_id=${oauth2.secret.client_id}&client_secret=${oauth2.secret.client_secret}`
      expect(await call(oauth2.tokenUrl, { headers: { 'content-type': form }, body })).toMatchObject({ status: 502, json: { error: 'temporarily_unavailable' } })
      oauth2.clearFaults()
      expect((await call(oauth2.tokenUrl, { headers: { 'content-type': form }, body })).status).toBe(200)
    })
  })

  describe('sir-giving', () => {
    it('refuses unsigned calls and public keys', async () => {
      const { sirGiving } = standIns
      expect((await call(`${sirGiving.url}/v1/partner/pool`, { method: 'GET' })).status).toBe(401)
      const publicKey = await call(`${sirGiving.url}/v1/partner/pool`, { method: 'GET', headers: { 'x-partner-key': String(sirGiving.secret.publicKey) } })
      expect(publicKey.status).toBe(403)
      expect(publicKey.headers['x-ratelimit-limit']).toBeDefined()
    })
  })

  it('close() can be called twice', async () => {
    const extra = await startProviderStandIns()
    await extra.close()
    await extra.close()
  })
})

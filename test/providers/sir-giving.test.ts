import { createHash, createHmac } from 'node:crypto'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSirGivingAdapter, emptyBodySha256 } from '../../src/providers/sir-giving.js'
import { fixedNow, providerError, testContext, testCredential } from '../support/providers/context.js'
import { startSirGivingStandIn, type SirGivingStandIn } from '../support/providers/sir-giving.js'

const secret = {
  secretKey: 'sk_test_51abcdef',
  hmacSecret: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
  publicKey: 'pk_test_51abcdef'
}

/** The documented formula, written out here rather than borrowed from the adapter. */
function expectedSignature (key: string, timestamp: string, method: string, pathWithQuery: string, body: string): string {
  const bodyHash = createHash('sha256').update(body, 'utf8').digest('hex')
  return createHmac('sha256', key).update(timestamp + method + pathWithQuery + bodyHash).digest('hex')
}

describe('sir-giving signer', () => {
  const credential = testCredential('sir-giving')

  it('knows the documented empty-body hash', () => {
    expect(createHash('sha256').update('').digest('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    expect(emptyBodySha256).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
  })

  it('signs timestamp + METHOD + path with query + sha256(body) with hmacSecret, lowercase hex, no separators', () => {
    const adapter = createSirGivingAdapter()
    const headers = adapter.sign({ method: 'GET', path: '/v1/partner/campaigns?limit=10&page=2', bodySha256: emptyBodySha256 }, secret, testContext(credential))
    const timestamp = String(fixedNow / 1000)
    expect(headers).toEqual({
      'X-Partner-Key': 'sk_test_51abcdef',
      'X-Timestamp': '1700000000',
      'X-Signature': expectedSignature(secret.hmacSecret, timestamp, 'GET', '/v1/partner/campaigns?limit=10&page=2', '')
    })
    expect(headers['X-Signature']).toMatch(/^[0-9a-f]{64}$/)
  })

  it('uppercases the method and lowercases the body hash before signing', () => {
    const adapter = createSirGivingAdapter()
    const body = '{"amount":500,"idempotencyKey":"k-1"}'
    const bodySha256 = createHash('sha256').update(body).digest('hex')
    const headers = adapter.sign({ method: 'post', path: '/v1/partner/donations', bodySha256: bodySha256.toUpperCase() }, secret, testContext(credential))
    expect(headers['X-Signature']).toBe(expectedSignature(secret.hmacSecret, '1700000000', 'POST', '/v1/partner/donations', body))
  })

  it('uses Unix seconds from the injected clock and signs afresh on every call', () => {
    const adapter = createSirGivingAdapter()
    const request = { method: 'GET', path: '/v1/partner/pool', bodySha256: emptyBodySha256 }
    const first = adapter.sign(request, secret, testContext(credential, { now: fixedNow + 999 }))
    const second = adapter.sign(request, secret, testContext(credential, { now: fixedNow + 61_000 }))
    expect(first['X-Timestamp']).toBe('1700000000')
    expect(second['X-Timestamp']).toBe('1700000061')
    expect(second['X-Signature']).not.toBe(first['X-Signature'])
  })

  it('signs with secretKey for legacy keys without hmacSecret, and warns once per credential', () => {
    const adapter = createSirGivingAdapter()
    const legacy = { secretKey: 'sk_live_legacy' }
    const ctx = testContext(credential)
    const headers = adapter.sign({ method: 'DELETE', path: '/v1/partner/x', bodySha256: emptyBodySha256 }, legacy, ctx)
    adapter.sign({ method: 'DELETE', path: '/v1/partner/x', bodySha256: emptyBodySha256 }, legacy, ctx)
    expect(headers['X-Signature']).toBe(expectedSignature('sk_live_legacy', '1700000000', 'DELETE', '/v1/partner/x', ''))
    expect(ctx.captured.entries().filter(l => l.level === 40)).toHaveLength(1)
  })

  it('names a missing secretKey (permanent) and rejects a malformed request', async () => {
    const adapter = createSirGivingAdapter()
    const err = await providerError(Promise.resolve().then(() => adapter.sign({ method: 'GET', path: '/v1/partner/x', bodySha256: emptyBodySha256 }, { hmacSecret: secret.hmacSecret }, testContext(credential))))
    expect(err.kind).toBe('permanent')
    expect(err.message).toContain('"secretKey"')
    expect(() => adapter.sign({ method: 'GET', path: 'no-slash', bodySha256: 'abc' }, secret, testContext(credential))).toThrow(TypeError)
  })

  describe('against the SIR Giving stand-in', () => {
    let sir: SirGivingStandIn
    let legacySir: SirGivingStandIn
    beforeAll(async () => {
      sir = await startSirGivingStandIn({ now: () => fixedNow })
      legacySir = await startSirGivingStandIn({ now: () => fixedNow, legacy: true })
    })
    afterAll(async () => { await Promise.all([sir.close(), legacySir.close()]) })

    async function call (standIn: SirGivingStandIn, method: string, path: string, body: string, options: { now?: number, sendBody?: string } = {}): Promise<number> {
      const adapter = createSirGivingAdapter()
      const headers = adapter.sign({ method, path, bodySha256: createHash('sha256').update(body).digest('hex') }, standIn.secret, testContext(credential, { now: options.now ?? fixedNow }))
      const sent = options.sendBody ?? body
      const response = await request(`${standIn.url}${path}`, { method: method as 'GET', headers: { ...headers, 'content-type': 'application/json' }, body: sent === '' ? undefined : sent })
      await response.body.dump()
      return response.statusCode
    }

    it('is accepted for GET with a query and POST with a body', async () => {
      expect(await call(sir, 'GET', '/v1/partner/campaigns?limit=5', '')).toBe(200)
      expect(await call(sir, 'POST', '/v1/partner/donations', '{"amount":100}')).toBe(200)
      expect(await call(legacySir, 'POST', '/v1/partner/donations', '{"amount":100}')).toBe(200)
      expect(sir.acceptedCalls).toBe(2)
    })

    it('is refused when the body sent differs from the body signed', async () => {
      expect(await call(sir, 'POST', '/v1/partner/donations', '{"amount":100}', { sendBody: '{"amount":900}' })).toBe(401)
      expect(sir.lastRejection).toBe('invalid X-Signature')
    })

    it('is refused when our clock is more than 5 minutes off', async () => {
      expect(await call(sir, 'GET', '/v1/partner/pool', '', { now: fixedNow - 301_000 })).toBe(401)
      expect(sir.lastRejection).toContain('±5 minutes')
    })
  })
})

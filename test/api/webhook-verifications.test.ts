import { createHmac } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { kivraWebhookHeaders, klaviWebhookHeaders, sirGivingWebhookHeaders } from '../support/providers/index.js'
import { bearer, expectProblem, keys, startApiWorld, type ApiWorld } from './world.js'

type Headers = Record<string, string | string[]>

describe('POST /v1/credentials/:id/webhook-verifications', () => {
  let world: ApiWorld
  let secrets: { kivra: string, klavi: string, sir: string }
  beforeAll(async () => {
    world = await startApiWorld()
    const held = world.secrets
    secrets = { kivra: held['secret/kivra']?.webhookSecret as string, klavi: held['secret/klavi']?.secretKey as string, sir: held['secret/sir']?.webhookSecret as string }
  })
  afterAll(async () => { await world.close() })

  const verify = async (id: string, payload: unknown, headers: Record<string, string> = bearer(keys.service)) =>
    await world.testApp.app.inject({ method: 'POST', url: `/v1/credentials/${id}/webhook-verifications`, headers, payload: payload as string })
  const now = (): string => String(Math.floor(Date.now() / 1000))
  const body = JSON.stringify({ id: 'evt_1', type: 'donation.created', createdAt: new Date().toISOString(), data: { amount: 1000, note: 'åäö ✓' } })

  const deliveries: Array<[string, string, () => Headers, () => Headers]> = [
    ['SIR Giving', 'sir',
      () => sirGivingWebhookHeaders(body, secrets.sir, { timestamp: now() }),
      () => sirGivingWebhookHeaders(body, 'whsec_not-the-secret', { timestamp: now() })],
    ['Kivra (hex)', 'kivra',
      () => kivraWebhookHeaders(body, [secrets.kivra], { timestamp: now() }),
      () => kivraWebhookHeaders(body, ['not-the-secret'], { timestamp: now() })],
    ['Kivra (base64, one entry per secret in rotation)', 'kivra',
      () => kivraWebhookHeaders(body, ['an-old-secret', secrets.kivra], { timestamp: now(), encoding: 'base64', join: 'repeat' }),
      () => kivraWebhookHeaders(body, ['an-old-secret'], { timestamp: now(), encoding: 'base64', join: 'repeat' })],
    ['Klavi', 'klavi',
      () => klaviWebhookHeaders(body, secrets.klavi, { timestamp: now() }),
      () => klaviWebhookHeaders(body, 'not-the-secret-key', { timestamp: now() })]
  ]

  describe('200', () => {
    it.each(deliveries)('%s: a delivery signed with the held secret is valid', async (_name, id, valid) => {
      const response = await verify(id, { headers: valid(), body })
      expect(response.statusCode).toBe(200)
      expect(response.json()).toEqual({ valid: true })
    })

    it.each(deliveries)('%s: a delivery signed with another secret is not', async (_name, id, _valid, invalid) => {
      const response = await verify(id, { headers: invalid(), body })
      expect(response.statusCode).toBe(200)
      expect(response.json()).toEqual({ valid: false, reason: 'bad_signature' })
    })

    it('a tampered body is not valid', async () => {
      const response = await verify('sir', { headers: sirGivingWebhookHeaders(body, secrets.sir, { timestamp: now() }), body: body.replace('1000', '9000') })
      expect(response.json()).toEqual({ valid: false, reason: 'bad_signature' })
    })

    it('header names in any case, as a receiver may have them', async () => {
      const headers = Object.fromEntries(Object.entries(sirGivingWebhookHeaders(body, secrets.sir, { timestamp: now() })).map(([name, value]) => [name.toUpperCase(), value]))
      expect((await verify('sir', { headers, body })).json()).toEqual({ valid: true })
    })

    it('a binary body sent as base64', async () => {
      const raw = Buffer.from([0, 255, 1, 254, 10, 13])
      const timestamp = now()
      // Computed inline from docs/providers.md: HMAC-SHA256 hex over timestamp + "." + rawBody.
      const signature = createHmac('sha256', secrets.sir).update(`${timestamp}.`).update(raw).digest('hex')
      const response = await verify('sir', { headers: { 'x-sir-signature': `sha256=${signature}`, 'x-sir-timestamp': timestamp }, body: raw.toString('base64'), body_encoding: 'base64' })
      expect(response.json()).toEqual({ valid: true })
    })

    it.each([
      ['no signature header', 'sir', {}, 'missing_signature'],
      ['no timestamp', 'sir', { 'x-sir-signature': 'sha256=00' }, 'missing_timestamp'],
      ['a timestamp an hour old', 'kivra', { 'x-kivra-signature': 'v1=00', 'x-kivra-timestamp': String(Math.floor(Date.now() / 1000) - 3600) }, 'stale_timestamp']
    ] as const)('%s gives its reason', async (_name, id, headers, reason) => {
      const response = await verify(id, { headers, body })
      expect(response.json()).toEqual({ valid: false, reason })
    })

    it('a stale but correctly signed delivery is refused (replay)', async () => {
      const old = String(Math.floor(Date.now() / 1000) - 3600)
      const response = await verify('sir', { headers: sirGivingWebhookHeaders(body, secrets.sir, { timestamp: old }), body })
      expect(response.json()).toEqual({ valid: false, reason: 'stale_timestamp' })
    })
  })

  describe('400', () => {
    it.each([
      ['no headers', { body }],
      ['no body', { headers: {} }],
      ['a numeric header value', { headers: { 'x-sir-signature': 1 }, body }],
      ['an unknown encoding', { headers: {}, body, body_encoding: 'hex' }],
      ['an extra field', { headers: {}, body, secret: 'x' }]
    ])('for %s', async (_name, payload) => {
      expectProblem(await verify('sir', payload), 400, 'CB_BAD_REQUEST')
    })
  })

  it('401 without caller credentials', async () => {
    expectProblem(await verify('sir', { headers: {}, body }, {}), 401, 'CB_UNAUTHENTICATED')
  })

  it('403 for a caller the credential does not list', async () => {
    expectProblem(await verify('sir', { headers: {}, body }, bearer(keys.other)), 403, 'CB_FORBIDDEN')
  })

  it('404 for an unknown credential', async () => {
    expectProblem(await verify('nope', { headers: {}, body }), 404, 'CB_CREDENTIAL_NOT_FOUND')
  })

  it('409 for a provider without a webhook signature scheme (Kigo)', async () => {
    expectProblem(await verify('kigo', { headers: {}, body }), 409, 'CB_UNSUPPORTED_OPERATION')
  })

  it('413 for a body over the limit', async () => {
    const payload = JSON.stringify({ headers: {}, body: 'x'.repeat(3 * 1024 * 1024) })
    expectProblem(await verify('sir', payload, { ...bearer(keys.service), 'content-type': 'application/json' }), 413, 'CB_PAYLOAD_TOO_LARGE')
  })

  it('415 for a raw webhook body posted as is', async () => {
    expectProblem(await verify('sir', body, { ...bearer(keys.service), 'content-type': 'application/octet-stream' }), 415, 'CB_UNSUPPORTED_MEDIA_TYPE')
  })

  it('503 when the webhook secret cannot be read', async () => {
    expectProblem(await verify('sir-missing-secret', { headers: {}, body }), 503, 'CB_SECRET_UNAVAILABLE')
  })
})

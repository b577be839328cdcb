import { describe, expect, it } from 'vitest'
import { kivraWebhookVerifier, klaviWebhookVerifier, parseWebhookTimestampMs, sirGivingWebhookVerifier } from '../../src/providers/webhooks.js'
import { fixedNow } from '../support/providers/context.js'
import { kivraWebhookHeaders, klaviWebhookHeaders, sirGivingWebhookHeaders } from '../support/providers/webhooks.js'

const ctx = { now: () => fixedNow, toleranceSeconds: 300 }
const nowSeconds = String(fixedNow / 1000)
const body = Buffer.from('{"id":"evt_1","type":"content.delivered","data":{"amount":12.5}}')
const tampered = Buffer.from('{"id":"evt_1","type":"content.delivered","data":{"amount":99.5}}')

describe('kivra webhook verifier', () => {
  const secret = { webhookSecret: 'kivra-webhook-secret' }

  it('accepts a valid hex signature', () => {
    const headers = kivraWebhookHeaders(body, ['kivra-webhook-secret'], { timestamp: nowSeconds })
    expect(kivraWebhookVerifier.verify({ headers, rawBody: body }, secret, ctx)).toEqual({ valid: true })
  })

  it('accepts a valid base64 signature', () => {
    const headers = kivraWebhookHeaders(body, ['kivra-webhook-secret'], { timestamp: nowSeconds, encoding: 'base64' })
    expect(kivraWebhookVerifier.verify({ headers, rawBody: body }, secret, ctx)).toEqual({ valid: true })
  })

  it('rejects a tampered body and a wrong secret', () => {
    const headers = kivraWebhookHeaders(body, ['kivra-webhook-secret'], { timestamp: nowSeconds })
    expect(kivraWebhookVerifier.verify({ headers, rawBody: tampered }, secret, ctx)).toEqual({ valid: false, reason: 'bad_signature' })
    const forged = kivraWebhookHeaders(body, ['someone-elses-secret'], { timestamp: nowSeconds })
    expect(kivraWebhookVerifier.verify({ headers: forged, rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'bad_signature' })
  })

  it('rejects a signature moved to another timestamp (the timestamp is signed)', () => {
    const headers = kivraWebhookHeaders(body, ['kivra-webhook-secret'], { timestamp: nowSeconds })
    const moved = { ...headers, 'x-kivra-timestamp': String(fixedNow / 1000 + 10) }
    expect(kivraWebhookVerifier.verify({ headers: moved, rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'bad_signature' })
  })

  it('rejects a stale timestamp, in seconds or milliseconds, either direction', () => {
    for (const timestamp of [String(fixedNow / 1000 - 301), String(fixedNow / 1000 + 301), String(fixedNow - 301_000)]) {
      const headers = kivraWebhookHeaders(body, ['kivra-webhook-secret'], { timestamp })
      expect(kivraWebhookVerifier.verify({ headers, rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'stale_timestamp' })
    }
    const ms = kivraWebhookHeaders(body, ['kivra-webhook-secret'], { timestamp: String(fixedNow - 299_000) })
    expect(kivraWebhookVerifier.verify({ headers: ms, rawBody: body }, secret, ctx)).toEqual({ valid: true })
  })

  it('accepts any of several v1= signatures, comma-separated or repeated (rotation on Kivra\'s side)', () => {
    const comma = kivraWebhookHeaders(body, ['old-secret', 'kivra-webhook-secret'], { timestamp: nowSeconds })
    expect(String(comma['x-kivra-signature']).split(',')).toHaveLength(2)
    expect(kivraWebhookVerifier.verify({ headers: comma, rawBody: body }, secret, ctx)).toEqual({ valid: true })
    const repeated = kivraWebhookHeaders(body, ['kivra-webhook-secret', 'new-secret'], { timestamp: nowSeconds, join: 'repeat' })
    expect(kivraWebhookVerifier.verify({ headers: repeated, rawBody: body }, secret, ctx)).toEqual({ valid: true })
    const noneOurs = kivraWebhookHeaders(body, ['old-secret', 'new-secret'], { timestamp: nowSeconds })
    expect(kivraWebhookVerifier.verify({ headers: noneOurs, rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'bad_signature' })
  })

  it('accepts a signature from any of our comma-separated secrets (rotation on our side)', () => {
    const headers = kivraWebhookHeaders(body, ['new-secret'], { timestamp: nowSeconds })
    expect(kivraWebhookVerifier.verify({ headers, rawBody: body }, { webhookSecret: 'kivra-webhook-secret, new-secret' }, ctx)).toEqual({ valid: true })
  })

  it('ignores entries of other scheme versions', () => {
    const headers = kivraWebhookHeaders(body, ['kivra-webhook-secret'], { timestamp: nowSeconds })
    const v0 = { ...headers, 'x-kivra-signature': String(headers['x-kivra-signature']).replace('v1=', 'v0=') }
    expect(kivraWebhookVerifier.verify({ headers: v0, rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'bad_signature' })
  })

  it('reports what is missing', () => {
    const headers = kivraWebhookHeaders(body, ['kivra-webhook-secret'], { timestamp: nowSeconds })
    expect(kivraWebhookVerifier.verify({ headers: { 'x-kivra-timestamp': nowSeconds }, rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'missing_signature' })
    expect(kivraWebhookVerifier.verify({ headers: { 'x-kivra-signature': headers['x-kivra-signature'] }, rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'missing_timestamp' })
    expect(kivraWebhookVerifier.verify({ headers, rawBody: body }, {}, ctx)).toEqual({ valid: false, reason: 'no_webhook_secret' })
    expect(kivraWebhookVerifier.verify({ headers, rawBody: body }, { webhookSecret: ' , ' }, ctx)).toEqual({ valid: false, reason: 'no_webhook_secret' })
  })

  it('survives garbage signatures of every length', () => {
    for (const garbage of ['v1=', 'v1=zz', `v1=${'a'.repeat(63)}`, `v1=${'a'.repeat(65)}`, 'v1=====', ',,,']) {
      const result = kivraWebhookVerifier.verify({ headers: { 'x-kivra-signature': garbage, 'x-kivra-timestamp': nowSeconds }, rawBody: body }, secret, ctx)
      expect(result.valid).toBe(false)
    }
  })
})

describe('klavi webhook verifier', () => {
  const secret = { accessKey: 'klavi-access', secretKey: 'klavi-secret-key' }

  it('accepts a valid hex signature of the raw body keyed with secretKey, with or without a timestamp', () => {
    expect(klaviWebhookVerifier.verify({ headers: klaviWebhookHeaders(body, 'klavi-secret-key'), rawBody: body }, secret, ctx)).toEqual({ valid: true })
    expect(klaviWebhookVerifier.verify({ headers: klaviWebhookHeaders(body, 'klavi-secret-key', { timestamp: nowSeconds }), rawBody: body }, secret, ctx)).toEqual({ valid: true })
  })

  it('accepts an uppercase hex signature', () => {
    const headers = klaviWebhookHeaders(body, 'klavi-secret-key')
    const upper = { 'x-klavi-signature': String(headers['x-klavi-signature']).toUpperCase() }
    expect(klaviWebhookVerifier.verify({ headers: upper, rawBody: body }, secret, ctx)).toEqual({ valid: true })
  })

  it('rejects a tampered body, a wrong secret, a stale timestamp and a missing signature', () => {
    expect(klaviWebhookVerifier.verify({ headers: klaviWebhookHeaders(body, 'klavi-secret-key'), rawBody: tampered }, secret, ctx)).toEqual({ valid: false, reason: 'bad_signature' })
    expect(klaviWebhookVerifier.verify({ headers: klaviWebhookHeaders(body, 'other-key'), rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'bad_signature' })
    expect(klaviWebhookVerifier.verify({ headers: klaviWebhookHeaders(body, 'klavi-secret-key', { timestamp: String(fixedNow - 600_000) }), rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'stale_timestamp' })
    expect(klaviWebhookVerifier.verify({ headers: {}, rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'missing_signature' })
    expect(klaviWebhookVerifier.verify({ headers: klaviWebhookHeaders(body, 'klavi-secret-key'), rawBody: body }, { accessKey: 'a' }, ctx)).toEqual({ valid: false, reason: 'no_webhook_secret' })
  })
})

describe('sir-giving webhook verifier', () => {
  const secret = { secretKey: 'sk_test_x', webhookSecret: 'whsec_abc123' }

  it('accepts sha256=<hex> over timestamp "." body', () => {
    const headers = sirGivingWebhookHeaders(body, 'whsec_abc123', { timestamp: nowSeconds })
    expect(String(headers['x-sir-signature'])).toMatch(/^sha256=[0-9a-f]{64}$/)
    expect(sirGivingWebhookVerifier.verify({ headers, rawBody: body }, secret, ctx)).toEqual({ valid: true })
  })

  it('rejects a tampered body, a wrong secret, a stale timestamp, and a bare hex without sha256=', () => {
    const headers = sirGivingWebhookHeaders(body, 'whsec_abc123', { timestamp: nowSeconds })
    expect(sirGivingWebhookVerifier.verify({ headers, rawBody: tampered }, secret, ctx)).toEqual({ valid: false, reason: 'bad_signature' })
    expect(sirGivingWebhookVerifier.verify({ headers: sirGivingWebhookHeaders(body, 'whsec_other', { timestamp: nowSeconds }), rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'bad_signature' })
    const stale = sirGivingWebhookHeaders(body, 'whsec_abc123', { timestamp: String(fixedNow / 1000 - 3600) })
    expect(sirGivingWebhookVerifier.verify({ headers: stale, rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'stale_timestamp' })
    const bare = { ...headers, 'x-sir-signature': String(headers['x-sir-signature']).replace('sha256=', '') }
    expect(sirGivingWebhookVerifier.verify({ headers: bare, rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'bad_signature' })
  })

  it('reports a missing timestamp, signature or webhook secret', () => {
    const headers = sirGivingWebhookHeaders(body, 'whsec_abc123', { timestamp: nowSeconds })
    expect(sirGivingWebhookVerifier.verify({ headers: { 'x-sir-signature': headers['x-sir-signature'] }, rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'missing_timestamp' })
    expect(sirGivingWebhookVerifier.verify({ headers: { 'x-sir-timestamp': nowSeconds }, rawBody: body }, secret, ctx)).toEqual({ valid: false, reason: 'missing_signature' })
    expect(sirGivingWebhookVerifier.verify({ headers, rawBody: body }, { secretKey: 'sk_test_x' }, ctx)).toEqual({ valid: false, reason: 'no_webhook_secret' })
  })
})

describe('webhook timestamps', () => {
  it('reads seconds, milliseconds and ISO 8601; refuses anything else', () => {
    expect(parseWebhookTimestampMs('1700000000')).toBe(fixedNow)
    expect(parseWebhookTimestampMs('1700000000000')).toBe(fixedNow)
    expect(parseWebhookTimestampMs('2023-11-14T22:13:20Z')).toBe(fixedNow)
    expect(parseWebhookTimestampMs('yesterday')).toBeUndefined()
    expect(parseWebhookTimestampMs('-5')).toBeUndefined()
    expect(parseWebhookTimestampMs('2023-13-45T99:99:99Z')).toBeUndefined()
  })
})

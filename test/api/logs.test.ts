import { createHash, randomBytes } from 'node:crypto'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tempFile } from '../support/app.js'
import { sirGivingWebhookHeaders, type ProviderStandIn } from '../support/providers/index.js'
import { audience, issuer, signingKey } from '../auth/jwt-issuer.js'
import { bearer, keys, startApiWorld, type ApiWorld } from './world.js'
import { sleep } from '../../src/time.js'
import { waitFor } from '../support/wait.js'

const fingerprintOf = (token: string): string => createHash('sha256').update(token).digest('base64url').slice(0, 12)

interface TokenAnswer { response: LightMyRequestResponse, caller: string, credentialId: string }

describe('log capture at LOG_LEVEL=debug over a realistic sequence', () => {
  let world: ApiWorld
  const tokenAnswers: TokenAnswer[] = []
  const everyResponse: LightMyRequestResponse[] = []
  const secretLookingAuthorization = `Bearer sk_live_${randomBytes(18).toString('hex')}`
  const bogusJwt = `Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.${Buffer.from(JSON.stringify({ sub: 'x', secret: randomBytes(8).toString('hex') })).toString('base64url')}.${randomBytes(32).toString('base64url')}`

  beforeAll(async () => {
    // JWT callers configured too, so a bogus JWT goes all the way through jose (and its debug log line).
    const jwtKey = await signingKey('RS256')
    world = await startApiWorld({ logLevel: 'debug', callerJwt: { issuer, audience, jwks_file: tempFile('jwks.json', JSON.stringify({ keys: [jwtKey.jwk] })) } })
    const { app } = world.testApp
    const inject = async (options: InjectOptions): Promise<LightMyRequestResponse> => {
      const response = await app.inject(options)
      everyResponse.push(response)
      return response
    }
    const token = async (credentialId: string, key: string, caller: string, query = ''): Promise<LightMyRequestResponse> => {
      const response = await inject({ url: `/v1/credentials/${credentialId}/token${query}`, headers: bearer(key) })
      if (response.statusCode === 200) tokenAnswers.push({ response, caller, credentialId })
      return response
    }

    // Tokens from every token provider, twice each (the second from the local cache).
    for (const id of ['kivra', 'kigo', 'klavi', 'oauth2-short']) {
      expect((await token(id, keys.service, 'service', '?min_ttl=30')).statusCode).toBe(200)
      expect((await token(id, keys.service, 'service', '?min_ttl=30')).statusCode).toBe(200)
    }
    expect((await token('oauth2-short', keys.frontend, 'frontend', '?min_ttl=30')).statusCode).toBe(200)
    expect((await token('kigo-other', keys.other, 'other')).statusCode).toBe(200)

    // A rejection report (forces a refresh), and one about a token the broker never issued.
    const current = tokenAnswers[0]?.response.json<{ access_token: string }>().access_token as string
    for (const rejected of [current, 'kivra_unknown-token']) {
      const response = await inject({ method: 'POST', url: '/v1/credentials/kivra/token/rejections', headers: bearer(keys.service), payload: { access_token: rejected } })
      expect(response.statusCode).toBe(200)
      tokenAnswers.push({ response, caller: 'service', credentialId: 'kivra' })
    }
    // Klavi through its refresh endpoint (sends the current token as Bearer to the provider).
    const klaviToken = tokenAnswers.find(answer => answer.credentialId === 'klavi')?.response.json<{ access_token: string }>().access_token
    const klaviRejection = await inject({ method: 'POST', url: '/v1/credentials/klavi/token/rejections', headers: bearer(keys.service), payload: { access_token: klaviToken } })
    expect(klaviRejection.statusCode).toBe(200)
    tokenAnswers.push({ response: klaviRejection, caller: 'service', credentialId: 'klavi' })

    // A signature and webhook verifications (valid and not).
    const emptySha = createHash('sha256').update('').digest('hex')
    expect((await inject({ method: 'POST', url: '/v1/credentials/sir/signatures', headers: bearer(keys.service), payload: { method: 'POST', path: '/v1/partner/donations', body_sha256: emptySha } })).statusCode).toBe(200)
    const webhookBody = '{"id":"evt_1"}'
    const signed = sirGivingWebhookHeaders(webhookBody, world.secrets['secret/sir']?.webhookSecret as string, { timestamp: String(Math.floor(Date.now() / 1000)) })
    expect((await inject({ method: 'POST', url: '/v1/credentials/sir/webhook-verifications', headers: bearer(keys.service), payload: { headers: signed, body: webhookBody } })).json()).toEqual({ valid: true })
    expect((await inject({ method: 'POST', url: '/v1/credentials/kivra/webhook-verifications', headers: bearer(keys.service), payload: { headers: { 'x-kivra-signature': 'v1=00', 'x-kivra-timestamp': '1' }, body: webhookBody } })).statusCode).toBe(200)

    // Provider failures: wrong credentials, a 5xx, a dropped connection; and an operator's forced refresh.
    expect((await token('kivra-rejecting', keys.service, 'service')).statusCode).toBe(502)
    expect((await token('kigo-down', keys.service, 'service')).statusCode).toBe(503)
    expect((await token('klavi-dropping', keys.service, 'service')).statusCode).toBe(503)
    expect((await inject({ method: 'POST', url: '/v1/admin/credentials/kivra/refresh', headers: bearer(keys.admin) })).statusCode).toBe(200)
    expect((await inject({ method: 'POST', url: '/v1/admin/credentials/kivra-rejecting/refresh', headers: bearer(keys.admin) })).statusCode).toBe(502)

    // Unauthenticated and unauthorized requests carrying secret-looking credentials.
    expect((await inject({ url: '/v1/credentials/kivra/token', headers: { authorization: secretLookingAuthorization } })).statusCode).toBe(401)
    expect((await inject({ url: '/v1/credentials', headers: { authorization: bogusJwt } })).statusCode).toBe(401)
    expect((await inject({ url: '/v1/credentials/kivra/token', headers: { ...bearer(keys.other), 'x-api-key': keys.admin, cookie: `session=${keys.admin}` } })).statusCode).toBe(403)
    expect((await inject({ method: 'POST', url: '/v1/credentials/kivra/token/rejections', headers: { authorization: secretLookingAuthorization }, payload: { access_token: current } })).statusCode).toBe(401)

    // Let background refreshes and their failure logs land.
    await waitFor('the failing refreshes', () => world.standIns.kigoDown.mintAttempts >= 1 && world.standIns.klaviDropping.mintAttempts >= 1)
    await sleep(100)
  })
  afterAll(async () => { await world.close() })

  it('logged at debug level (the test would prove little at info)', () => {
    expect(world.testApp.app.log.level).toBe('debug')
    expect(world.testApp.logs.entries()).toContainEqual(expect.objectContaining({ level: 20, msg: 'caller JWT rejected' }))
    expect(world.testApp.logs.lines.length).toBeGreaterThan(50)
  })

  it('no line holds a minted token, a secret, an API key, an Authorization value or what the providers were sent', () => {
    const text = world.testApp.logs.text()
    const tokens = world.issuedTokens()
    expect(tokens.length).toBeGreaterThanOrEqual(6)
    const forbidden: Array<[string, string]> = [
      ...tokens.map(token => ['minted token', token] as [string, string]),
      // The signature part alone is enough to replay a JWT (Klavi tokens are JWTs).
      ...tokens.filter(token => token.split('.').length === 3).map(token => ['minted token signature', token.split('.')[2] as string] as [string, string]),
      ...world.secretValues.map(secret => ['secret', secret] as [string, string]),
      ...Object.entries(keys).map(([caller, key]) => [`API key of ${caller}`, key] as [string, string]),
      ['secret-looking Authorization', secretLookingAuthorization.slice('Bearer '.length)],
      ['bogus JWT', bogusJwt.slice('Bearer '.length)],
      // What the stand-ins received: Basic client credentials, Bearer tokens to Klavi's refresh, JSON bodies with keys.
      ...(Object.values(world.standIns) as ProviderStandIn[]).flatMap(standIn => standIn.requests.flatMap(request => [
        ...(typeof request.headers.authorization === 'string' ? [['provider Authorization', request.headers.authorization.split(' ')[1] as string] as [string, string]] : []),
        ...(request.body.length >= 20 ? [['provider request body', request.body] as [string, string]] : [])
      ]))
    ]
    const leaks = forbidden.filter(([, value]) => value.length >= 8 && text.includes(value)).map(([what]) => what)
    expect(leaks).toEqual([])
  })

  it('exactly one audit line per token handed out, with caller, credential, fingerprint, expiry and request id', () => {
    const audits = world.testApp.logs.entries().filter(entry => entry.msg === 'token issued')
    expect(audits).toHaveLength(tokenAnswers.length)
    for (const { response, caller, credentialId } of tokenAnswers) {
      const body = response.json<{ access_token: string, expires_at: string }>()
      const requestId = response.headers['x-request-id']
      const lines = audits.filter(entry => entry.reqId === requestId)
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatchObject({ audit: true, level: 30, caller, credentialId, fingerprint: fingerprintOf(body.access_token), expiresAt: body.expires_at, reqId: requestId })
      expect(JSON.stringify(lines[0])).not.toContain(body.access_token)
    }
  })

  it('no audit line for an answer that handed out no token', () => {
    const answered = new Set(tokenAnswers.map(answer => answer.response.headers['x-request-id']))
    const others = everyResponse.filter(response => !answered.has(response.headers['x-request-id'])).map(response => response.headers['x-request-id'])
    const stray = world.testApp.logs.entries().filter(entry => entry.msg === 'token issued' && others.includes(entry.reqId as string))
    expect(stray).toEqual([])
  })

  it('failures are logged with their kind, not their upstream bodies', () => {
    const entries = world.testApp.logs.entries()
    expect(entries.some(entry => entry.msg === 'refresh failed' && entry.credentialId === 'kivra-rejecting')).toBe(true)
    expect(entries.some(entry => entry.msg === 'refresh failed' && entry.credentialId === 'kigo-down')).toBe(true)
    const text = world.testApp.logs.text()
    expect(text).not.toContain('Kivra stand-in')
  })
})

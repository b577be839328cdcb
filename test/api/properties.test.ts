/**
 * Property-based tests over what a caller controls: headers (Authorization included), the :id path
 * segment, the query string and request bodies. Whatever arrives, the API never answers 500, answers
 * every error as problem+json with a code from the table, and never echoes a secret: the secrets file, the
 * stand-ins and one caller's API key are seeded with recognisable canaries, and no answer may carry a
 * canary, nor a minted token unless it is a token answer to a caller allowed to have it.
 */
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import type { LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { errorTable } from '../../src/errors.js'
import { sha256Hex, tempFile } from '../support/app.js'
import { audience, callerToken, issuer, signingKey, type SigningKey } from '../auth/jwt-issuer.js'
import { keys, problemContentType, startApiWorld, type ApiWorld } from './world.js'

const canary = `CANARY-SECRET-${randomBytes(6).toString('hex')}`
const canaryApiKey = `CANARY-APIKEY-${randomBytes(12).toString('hex')}`
const jwtSubject = 'system:serviceaccount:mail:mailer'
const numRuns = 150

const credentialIds = ['kivra', 'kigo', 'klavi', 'sir', 'oauth2-short', 'kigo-other', 'kivra-rejecting', 'kigo-down', 'nope']
/** Which callers may get a token of which credential (the world's policy, written out independently). */
const tokenHolders: Record<string, string[]> = {
  kivra: ['service', 'canary', 'mailer'],
  kigo: ['service'],
  klavi: ['service'],
  'oauth2-short': ['service', 'frontend'],
  'kigo-other': ['other']
}

type Method = 'GET' | 'POST'
interface Sent { method: Method, url: string, headers: Record<string, string>, caller: string | undefined, credentialId: string | undefined }

describe('the API under arbitrary input', () => {
  let world: ApiWorld
  let jwtKey: SigningKey
  let validJwt: string
  /** Presented credential → caller id. */
  let callerOf: Map<string, string>

  beforeAll(async () => {
    jwtKey = await signingKey('ES256')
    world = await startApiWorld({
      secretMaterial: name => `${canary}-${name}-${randomBytes(4).toString('hex')}`,
      extraCallers: [{ id: 'canary', api_key_sha256: sha256Hex(canaryApiKey) }, { id: 'mailer', jwt_subject: jwtSubject }],
      extraAllowedOnKivra: ['canary', 'mailer'],
      callerJwt: { issuer, audience, jwks_file: tempFile('jwks.json', JSON.stringify({ keys: [jwtKey.jwk] })) },
      env: { RATE_LIMIT_PER_MINUTE: '1000000' }
    })
    validJwt = await callerToken(jwtKey, { sub: jwtSubject })
    callerOf = new Map([[keys.service, 'service'], [keys.admin, 'admin'], [keys.frontend, 'frontend'], [keys.other, 'other'], [canaryApiKey, 'canary'], [validJwt, 'mailer']])
  })
  afterAll(async () => {
    expect(world.testApp.logs.entries().filter(entry => entry.msg === 'unhandled error')).toEqual([])
    await world.close()
  })

  /** Every secret value and API key the broker knows of; none may appear in any answer. */
  const canaries = (): string[] => [...world.secretValues, canaryApiKey, keys.service, keys.admin, keys.frontend, keys.other]

  /** The caller a request authenticates as, by the same rule as the broker ("Bearer <credential>"). */
  const presentedCaller = (headers: Record<string, string>): string | undefined => {
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(headers.authorization ?? '')
    return match?.[1] === undefined ? undefined : callerOf.get(match[1])
  }

  async function send (method: Method, url: string, headers: Record<string, string>, payload?: string | Buffer): Promise<{ sent: Sent, response: LightMyRequestResponse }> {
    const response = await world.testApp.app.inject({ method, url, headers, payload })
    const id = /^\/v1\/(?:admin\/)?credentials\/([^/?]+)/.exec(url)?.[1]
    return { sent: { method, url, headers, caller: presentedCaller(headers), credentialId: id === undefined ? undefined : safeDecode(id) }, response }
  }

  function checkInvariants ({ sent, response }: { sent: Sent, response: LightMyRequestResponse }): void {
    const where = `${sent.method} ${sent.url} → ${response.statusCode}`
    expect(response.statusCode, where).not.toBe(500)
    if (response.statusCode >= 400) {
      expect(response.headers['content-type'], where).toBe(problemContentType)
      const problem = response.json<{ code: keyof typeof errorTable, status: number, request_id: string }>()
      expect(errorTable[problem.code]?.status, where).toBe(response.statusCode)
      expect(problem.status, where).toBe(response.statusCode)
      expect(problem.request_id, where).toBe(response.headers['x-request-id'])
    }
    const headerText = Object.entries(response.headers).map(([name, value]) => `${name}: ${String(value)}`).join('\n')
    // The one legitimate appearance of a held secret: SIR Giving's partner key in a signature answer (the
    // caller must send it as X-Partner-Key).
    const signed = response.statusCode === 200 && sent.url.includes('/signatures')
    for (const secret of canaries()) {
      if (signed && secret === world.secrets['secret/sir']?.secretKey) continue
      expect(response.body.includes(secret), `${where}: body echoes a secret`).toBe(false)
      expect(headerText.includes(secret), `${where}: headers echo a secret`).toBe(false)
    }
    for (const token of world.issuedTokens()) {
      if (!response.body.includes(token)) continue
      const isTokenAnswer = response.statusCode === 200 && /\/token(\/rejections)?(\?|$)/.test(sent.url)
      expect(isTokenAnswer, `${where}: a minted token outside a token answer`).toBe(true)
      expect(tokenHolders[sent.credentialId ?? '']?.includes(sent.caller ?? ''), `${where}: a token for a caller not allowed it`).toBe(true)
    }
  }

  // Arbitraries -----------------------------------------------------------------------------------------

  const char = (min: number, max: number): fc.Arbitrary<string> => fc.integer({ min, max }).map(code => String.fromCharCode(code))
  /** What an HTTP header value may hold on the wire: tab, visible ASCII, space, obs-text. */
  const headerValue = fc.string({ unit: fc.oneof({ weight: 8, arbitrary: char(0x20, 0x7e) }, { weight: 1, arbitrary: char(0x80, 0xff) }, { weight: 1, arbitrary: fc.constant('\t') }), maxLength: 200 })
  const headerName = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,30}$/)
    .filter(name => !['content-length', 'transfer-encoding', 'host', 'connection', 'expect', 'upgrade', 'content-type', 'authorization', 'te', 'trailer'].includes(name.toLowerCase()))
  const b64url = fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split('')), maxLength: 60 })
  const jwtShaped = fc.tuple(b64url, b64url, b64url).map(parts => parts.join('.'))
  const presented = fc.oneof(
    fc.constantFrom(keys.service, keys.admin, keys.frontend, keys.other, canaryApiKey),
    fc.constant(null).map(() => validJwt),
    jwtShaped,
    headerValue,
    fc.constantFrom(canaryApiKey.slice(0, -1), `${canaryApiKey}x`, canaryApiKey.toLowerCase(), sha256Hex(canaryApiKey))
  )
  const authorization = fc.oneof(
    fc.tuple(fc.constantFrom('Bearer ', 'bearer ', 'BEARER  ', 'Basic ', 'Token ', '', 'Bearer'), presented, fc.constantFrom('', ' ', '\t')).map(([scheme, value, tail]) => `${scheme}${value}${tail}`),
    headerValue
  )
  const headers = fc.record({
    authorization: fc.option(authorization, { nil: undefined }),
    others: fc.dictionary(headerName, headerValue, { maxKeys: 5 })
  }).map(({ authorization: value, others }) => ({ ...others, ...(value === undefined ? {} : { authorization: value }) }))
  const validHeaders = fc.constantFrom(keys.service, keys.admin, keys.frontend, keys.other, canaryApiKey).map(key => ({ authorization: `Bearer ${key}` }))
  const routes: Array<{ method: Method, path: (id: string) => string }> = [
    { method: 'GET', path: id => `/v1/credentials/${id}/token` },
    { method: 'POST', path: id => `/v1/credentials/${id}/token/rejections` },
    { method: 'POST', path: id => `/v1/credentials/${id}/signatures` },
    { method: 'POST', path: id => `/v1/credentials/${id}/webhook-verifications` },
    { method: 'GET', path: () => '/v1/credentials' },
    { method: 'GET', path: () => '/v1/admin/credentials' },
    { method: 'POST', path: id => `/v1/admin/credentials/${id}/refresh` }
  ]
  const route = fc.constantFrom(...routes)
  const credentialId = fc.constantFrom(...credentialIds)

  // Properties ------------------------------------------------------------------------------------------

  it('arbitrary headers, Authorization included', async () => {
    await fc.assert(fc.asyncProperty(route, credentialId, headers, async (target, id, requestHeaders) => {
      const body = target.method === 'POST' ? JSON.stringify({ access_token: 'x' }) : undefined
      checkInvariants(await send(target.method, target.path(id), body === undefined ? requestHeaders : { ...requestHeaders, 'content-type': 'application/json' }, body))
    }), { numRuns })
  })

  it('arbitrary :id path segments, encoded or raw', async () => {
    const segment = fc.oneof(
      fc.string({ unit: 'binary', minLength: 1, maxLength: 80 }).map(encodeURIComponent),
      fc.string({ unit: char(0x21, 0x7e), minLength: 1, maxLength: 80 }).map(raw => raw.replace(/[/?#]/g, '')).filter(raw => raw !== ''),
      fc.constantFrom('%', '%zz', '%c0%af', '..', '.', '%2e%2e', '%2F', 'kivra%00', 'KIVRA', 'a'.repeat(65), ' kivra', '%E2%80%AE')
    )
    await fc.assert(fc.asyncProperty(route, segment, validHeaders, async (target, id, requestHeaders) => {
      const body = target.method === 'POST' ? JSON.stringify({ access_token: 'x' }) : undefined
      checkInvariants(await send(target.method, target.path(id), body === undefined ? requestHeaders : { ...requestHeaders, 'content-type': 'application/json' }, body))
    }), { numRuns })
  })

  it('arbitrary min_ttl values and query strings', async () => {
    const query = fc.oneof(
      fc.oneof(fc.integer(), fc.integer({ min: 0, max: 30_000 }), fc.double(), fc.string({ maxLength: 20 }), fc.constantFrom('', '0', '60', '28800', '28801', '86400', '-0', '1e3', '0x10', 'NaN', 'Infinity', ' 60'))
        .map(value => `min_ttl=${encodeURIComponent(String(value))}`),
      fc.string({ unit: char(0x21, 0x7e), maxLength: 60 }).map(raw => raw.replace(/#/g, '')),
      fc.tuple(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 100 })).map(([a, b]) => `min_ttl=${a}&min_ttl=${b}`)
    )
    await fc.assert(fc.asyncProperty(fc.constantFrom('kivra', 'kigo', 'oauth2-short', 'sir'), query, async (id, search) => {
      const result = await send('GET', `/v1/credentials/${id}/token?${search}`, { authorization: `Bearer ${keys.service}` })
      checkInvariants(result)
      expect([200, 400, 409, 422]).toContain(result.response.statusCode)
      if (result.response.statusCode === 200) {
        const minTtl = Number(new URLSearchParams(search).get('min_ttl') ?? 60)
        expect(result.response.json<{ expires_in: number }>().expires_in).toBeGreaterThanOrEqual(minTtl)
      }
    }), { numRuns })
  })

  it('arbitrary JSON bodies on the POST routes', async () => {
    const postRoutes = routes.filter(candidate => candidate.method === 'POST')
    const nearlyValid = fc.oneof(
      fc.record({ access_token: fc.oneof(fc.string(), fc.jsonValue()) }, { requiredKeys: [] }),
      fc.record({ method: fc.oneof(fc.string(), fc.constantFrom('GET', 'post')), path: fc.oneof(fc.string(), fc.webPath()), body_sha256: fc.oneof(fc.string(), fc.stringMatching(/^[0-9a-f]{64}$/)) }, { requiredKeys: [] }),
      fc.record({ headers: fc.oneof(fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.array(fc.string()))), fc.jsonValue()), body: fc.oneof(fc.string(), fc.jsonValue()), body_encoding: fc.oneof(fc.constantFrom('utf8', 'base64'), fc.string()) }, { requiredKeys: [] })
    )
    const body = fc.oneof(fc.jsonValue().map(value => JSON.stringify(value) ?? 'null'), nearlyValid.map(value => JSON.stringify(value)))
    await fc.assert(fc.asyncProperty(fc.constantFrom(...postRoutes), fc.constantFrom('kivra', 'sir', 'klavi', 'kigo', 'nope'), validHeaders, body, async (target, id, requestHeaders, payload) => {
      checkInvariants(await send(target.method, target.path(id), { ...requestHeaders, 'content-type': 'application/json' }, payload))
    }), { numRuns })
  })

  it('arbitrary non-JSON bodies and content types on the POST routes', async () => {
    const postRoutes = routes.filter(candidate => candidate.method === 'POST')
    const contentType = fc.oneof(
      fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream', 'multipart/form-data; boundary=x', 'application/json',
        'application/json; charset=utf-16', 'APPLICATION/JSON', 'application/problem+json', 'application/json;', ';', 'application/json; charset=latin1'),
      headerValue
    )
    const payload = fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), fc.uint8Array({ maxLength: 300 }).map(bytes => Buffer.from(bytes)))
    await fc.assert(fc.asyncProperty(fc.constantFrom(...postRoutes), fc.constantFrom('kivra', 'sir', 'nope'), validHeaders, contentType, payload, async (target, id, requestHeaders, type, raw) => {
      checkInvariants(await send(target.method, target.path(id), { ...requestHeaders, 'content-type': type }, raw))
    }), { numRuns })
  })
})

function safeDecode (segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}

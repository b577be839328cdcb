/**
 * The API test world: the real app (buildTestApp: real Redis, unique prefix, log capture) with one provider
 * stand-in per credential as its base_url, file secrets taken from the stand-ins, and a set of callers that
 * exercise every policy branch. Faulty credentials get their own stand-in, so a fault never leaks into
 * another test's credential (circuit breakers are per endpoint too).
 */
import { createHash, randomBytes } from 'node:crypto'
import type { LightMyRequestResponse } from 'fastify'
import { expect } from 'vitest'
import { adminApiKey, buildTestApp, exampleApiKey, sha256Hex, type TestApp, type TestAppOptions } from '../support/app.js'
import {
  startKigoStandIn, startKivraStandIn, startKlaviStandIn, startOAuth2StandIn, startSirGivingStandIn,
  type KigoStandIn, type KivraStandIn, type KlaviStandIn, type OAuth2StandIn, type ProviderStandIn, type SirGivingStandIn
} from '../support/providers/index.js'

export const problemContentType = 'application/problem+json; charset=utf-8'

/** API keys of the callers below (service and admin are the harness defaults). */
export const keys = {
  service: exampleApiKey,
  admin: adminApiKey,
  frontend: 'test-frontend-key-0123456789',
  other: 'test-other-key-0123456789'
} as const

export const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` })

export interface StandIns {
  kivra: KivraStandIn
  kigo: KigoStandIn
  klavi: KlaviStandIn
  sir: SirGivingStandIn
  /** Issues 100-second tokens; its credential has no lifetime_seconds, so min_ttl may go up to a day. */
  oauth2: OAuth2StandIn
  /** Answers every mint with Kivra's wrong-credentials error (40104). */
  kivraRejecting: KivraStandIn
  /** Answers every mint with a 503. */
  kigoDown: KigoStandIn
  /** Drops every connection without answering. */
  klaviDropping: KlaviStandIn
}

export interface ApiWorld {
  testApp: TestApp
  standIns: StandIns
  /** Every token any stand-in has issued so far. */
  issuedTokens: () => string[]
  /** The secrets file the broker reads, by secret path. */
  secrets: Record<string, Record<string, string>>
  /** The secret values the broker holds (for "never echoed, never logged" assertions). */
  secretValues: string[]
  close: () => Promise<void>
}

export interface ApiWorldOptions {
  logLevel?: string
  env?: Record<string, string>
  /** Secret material; default random strings. Pass recognisable canaries for leak tests. */
  secretMaterial?: (name: string) => string
  /** Extra callers (e.g. a canary API key) and extra credentials to add to the file. */
  extraCallers?: Array<Record<string, unknown>>
  extraAllowedOnKivra?: string[]
  /** A caller_jwt section for JWT callers. */
  callerJwt?: Record<string, unknown>
  overrides?: TestAppOptions['overrides']
}

const randomSecret = (name: string): string => `${name}-${randomBytes(12).toString('hex')}`

/** Starts the stand-ins, writes the credentials and secrets files, and builds the app. */
export async function startApiWorld (options: ApiWorldOptions = {}): Promise<ApiWorld> {
  const material = options.secretMaterial ?? randomSecret
  const sirHmac = createHash('sha256').update(material('sir-hmac')).digest('hex')
  const standIns: StandIns = {
    kivra: await startKivraStandIn({ clientId: 'kivra-client', clientSecret: material('kivra-client-secret') }),
    kigo: await startKigoStandIn({ apiKey: material('kigo-api-key'), partnerId: 'kigo-partner' }),
    klavi: await startKlaviStandIn({ accessKey: 'klavi-access', secretKey: material('klavi-secret-key') }),
    sir: await startSirGivingStandIn({ secretKey: `sk_test_${material('sir-sk')}`, hmacSecret: sirHmac, webhookSecret: `whsec_${material('sir-whsec')}` }),
    oauth2: await startOAuth2StandIn({ clientId: 'oauth2-client', clientSecret: material('oauth2-client-secret'), lifetimeSeconds: 100 }),
    kivraRejecting: await startKivraStandIn({ clientId: 'kivra-client', clientSecret: material('kivra-rejected-secret') }),
    kigoDown: await startKigoStandIn({ apiKey: material('kigo-down-api-key'), partnerId: 'kigo-partner' }),
    klaviDropping: await startKlaviStandIn({ accessKey: 'klavi-access', secretKey: material('klavi-drop-secret-key') })
  }
  standIns.kivraRejecting.setFault({ kind: 'wrong-credentials' })
  standIns.kigoDown.setFault({ kind: 'server-error', status: 503 })
  standIns.klaviDropping.setFault({ kind: 'drop' })

  const kivraWebhookSecret = material('kivra-webhook-secret')
  const secrets: Record<string, Record<string, string>> = {
    'secret/kivra': { ...standIns.kivra.secret, webhookSecret: kivraWebhookSecret },
    'secret/kigo': { ...standIns.kigo.secret },
    'secret/klavi': { ...standIns.klavi.secret },
    'secret/sir': { ...standIns.sir.secret },
    'secret/oauth2': { ...standIns.oauth2.secret },
    'secret/kivra-rejecting': { ...standIns.kivraRejecting.secret },
    'secret/kigo-down': { ...standIns.kigoDown.secret },
    'secret/klavi-dropping': { ...standIns.klaviDropping.secret },
    // A SIR Giving secret without its secretKey: signing cannot work with it.
    'secret/sir-incomplete': { hmacSecret: sirHmac }
  }
  const callers = [
    { id: 'service', api_key_sha256: sha256Hex(keys.service) },
    { id: 'admin', api_key_sha256: sha256Hex(keys.admin), admin: true },
    { id: 'frontend', api_key_sha256: sha256Hex(keys.frontend), frontend: true },
    { id: 'other', api_key_sha256: sha256Hex(keys.other) },
    ...(options.extraCallers ?? [])
  ]
  const all = ['service']
  const credentials = [
    // frontend is listed on a backend-only partner credential by mistake: policy must still refuse it.
    { id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: standIns.kivra.url, allowed_scopes: ['post:kivra.v1.tenant.example.content'], allowed_callers: ['service', 'frontend', ...(options.extraAllowedOnKivra ?? [])] },
    { id: 'kigo', provider: 'kigo', environment: 'sandbox', secret: 'secret/kigo', base_url: standIns.kigo.url, allowed_callers: all },
    { id: 'klavi', provider: 'klavi', environment: 'sandbox', secret: 'secret/klavi', base_url: standIns.klavi.url, allowed_callers: all },
    { id: 'sir', provider: 'sir-giving', environment: 'sandbox', secret: 'secret/sir', base_url: standIns.sir.url, allowed_callers: all },
    { id: 'oauth2-short', provider: 'oauth2', environment: 'sandbox', secret: 'secret/oauth2', token_url: standIns.oauth2.tokenUrl, backend_only: false, allowed_callers: ['service', 'frontend'] },
    { id: 'kivra-rejecting', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra-rejecting', base_url: standIns.kivraRejecting.url, allowed_callers: all },
    { id: 'kigo-down', provider: 'kigo', environment: 'sandbox', secret: 'secret/kigo-down', base_url: standIns.kigoDown.url, allowed_callers: all },
    { id: 'klavi-dropping', provider: 'klavi', environment: 'sandbox', secret: 'secret/klavi-dropping', base_url: standIns.klaviDropping.url, allowed_callers: all },
    { id: 'sir-missing-secret', provider: 'sir-giving', environment: 'sandbox', secret: 'secret/nowhere', base_url: standIns.sir.url, allowed_callers: all },
    { id: 'sir-incomplete', provider: 'sir-giving', environment: 'sandbox', secret: 'secret/sir-incomplete', base_url: standIns.sir.url, allowed_callers: all },
    { id: 'kigo-other', provider: 'kigo', environment: 'sandbox', secret: 'secret/kigo', base_url: standIns.kigo.url, lifetime_seconds: 1700, allowed_callers: ['other'] }
  ]
  const everyStandIn: ProviderStandIn[] = Object.values(standIns)
  let testApp: TestApp
  try {
    testApp = await buildTestApp({
      credentialsFile: { callers, credentials, ...(options.callerJwt === undefined ? {} : { caller_jwt: options.callerJwt }) },
      secrets,
      logLevel: options.logLevel,
      env: options.env,
      // The API tests report rejections back to back; the broker's floor on rejection-driven refreshes
      // is tested in test/broker/rejections.test.ts.
      overrides: { ...options.overrides, brokerOptions: { rejectionRefreshIntervalMs: 0, ...options.overrides?.brokerOptions } }
    })
  } catch (err) {
    await Promise.all(everyStandIn.map(async standIn => { await standIn.close() }))
    throw err
  }
  return {
    testApp,
    standIns,
    issuedTokens: () => everyStandIn.flatMap(standIn => standIn.issuedTokens),
    secrets,
    secretValues: [...new Set(Object.values(secrets).flatMap(secret => Object.values(secret)).filter(value => value.length >= 12 && !['kivra-client', 'kigo-partner', 'klavi-access', 'oauth2-client'].includes(value)))],
    close: async () => {
      await testApp.close()
      await Promise.all(everyStandIn.map(async standIn => { await standIn.close() }))
    }
  }
}

/** Asserts an RFC 9457 problem answer with this status and code, and returns its body. */
export function expectProblem (response: LightMyRequestResponse, status: number, code: string): Record<string, unknown> {
  expect({ status: response.statusCode, body: response.body }).toMatchObject({ status })
  expect(response.headers['content-type']).toBe(problemContentType)
  const problem = response.json<Record<string, unknown>>()
  expect(problem).toMatchObject({ status, code, request_id: response.headers['x-request-id'] })
  expect(typeof problem.detail).toBe('string')
  expect(problem).not.toHaveProperty('stack')
  return problem
}

/**
 * The provider stand-ins of the embedded default. `npm start` on the example credentials (no
 * CREDENTIALS_FILE, not production) starts them in its own process before the broker, so the README's
 * token, signature and webhook requests answer on a fresh clone with nothing configured; `npm run demo`
 * does the same with short lifetimes; `node dist/embedded/stand-ins/main.js` runs them on their own
 * (docker compose).
 *
 * Ports: in the broker's process each stand-in takes a free port chosen at start and the in-memory
 * configuration is pointed at it before the broker is built. Fixed ports would collide with anything
 * already holding them (a second checkout, a running demo, parallel CI jobs); an ephemeral port cannot,
 * and the broker is the stand-ins' only client, so nobody else needs to know it (the start-up log line
 * says where they are). Only the stand-alone entry point, which other processes must find, uses the
 * fixed ports below.
 */
import { readFileSync } from 'node:fs'
import type { Logger } from 'pino'
import { embeddedSecretsFile, withCredentials, type Config, type CredentialConfig } from '../../config.js'
import { isAddressInUse, PortInUseError } from '../../ports.js'
import { startKigoStandIn, type KigoStandIn } from './kigo.js'
import { startKivraStandIn, type KivraStandIn } from './kivra.js'
import { startKlaviStandIn, type KlaviStandIn } from './klavi.js'
import { startSirGivingStandIn, type SirGivingStandIn } from './sir-giving.js'
import type { ProviderStandIn } from './stand-in.js'

/** The providers of the example credentials that have a stand-in. */
export const standInProviders = ['kivra', 'kigo', 'klavi', 'sir-giving'] as const
export type StandInProvider = typeof standInProviders[number]

/** The documented ports of the stand-alone stand-ins (main.ts, docker compose). */
export const fixedStandInPorts: Readonly<Record<StandInProvider, number>> = { kivra: 4010, kigo: 4011, klavi: 4012, 'sir-giving': 4013 }

export interface EmbeddedStandIns {
  readonly kivra: KivraStandIn
  readonly kigo: KigoStandIn
  readonly klavi: KlaviStandIn
  readonly sirGiving: SirGivingStandIn
  /** Base URL of each stand-in as this machine reaches it (`http://127.0.0.1:<port>`). */
  readonly urls: Readonly<Record<StandInProvider, string>>
  close: () => Promise<void>
}

export interface EmbeddedStandInsOptions {
  /** The credentials the stand-ins answer for: each stand-in accepts the secret of the first credential of its provider. */
  credentials: readonly CredentialConfig[]
  /** SECRETS_FILE-shaped secrets: `{ "<secret path>": { field: value } }`. */
  secrets: Readonly<Record<string, Readonly<Record<string, string>>>>
  /** Per provider; default 0 (a free port). */
  ports?: Partial<Record<StandInProvider, number>>
  /** Default 127.0.0.1. */
  host?: string
  /** Token lifetimes in seconds (the demo shortens them); default each provider's documented one. */
  lifetimes?: Partial<Record<'kivra' | 'kigo' | 'klavi', number>>
}

/**
 * Starts the Kivra, Kigo, Klavi and SIR Giving stand-ins, each accepting the secret its credential names.
 * If one cannot start, the others are closed again; a taken port is a PortInUseError.
 */
export async function startEmbeddedStandIns (options: EmbeddedStandInsOptions): Promise<EmbeddedStandIns> {
  const host = options.host ?? '127.0.0.1'
  const secretOf = (provider: StandInProvider): Readonly<Record<string, string>> => {
    const credential = options.credentials.find(candidate => candidate.provider === provider)
    return credential === undefined ? {} : options.secrets[credential.secret] ?? {}
  }
  const at = (provider: StandInProvider): { host: string, port: number } => ({ host, port: options.ports?.[provider] ?? 0 })
  const kivraSecret = secretOf('kivra')
  const kigoSecret = secretOf('kigo')
  const klaviSecret = secretOf('klavi')
  const sirGivingSecret = secretOf('sir-giving')
  const starts: Array<[StandInProvider, Promise<ProviderStandIn>]> = [
    ['kivra', startKivraStandIn({ ...at('kivra'), lifetimeSeconds: options.lifetimes?.kivra, clientId: kivraSecret.client_id, clientSecret: kivraSecret.client_secret })],
    ['kigo', startKigoStandIn({ ...at('kigo'), lifetimeSeconds: options.lifetimes?.kigo, apiKey: kigoSecret.api_key, partnerId: kigoSecret.partner_id })],
    ['klavi', startKlaviStandIn({ ...at('klavi'), lifetimeSeconds: options.lifetimes?.klavi, accessKey: klaviSecret.accessKey, secretKey: klaviSecret.secretKey })],
    ['sir-giving', startSirGivingStandIn({
      ...at('sir-giving'),
      secretKey: sirGivingSecret.secretKey,
      hmacSecret: sirGivingSecret.hmacSecret,
      publicKey: sirGivingSecret.publicKey,
      webhookSecret: sirGivingSecret.webhookSecret
    })]
  ]
  const settled = await Promise.allSettled(starts.map(async ([, start]) => await start))
  const failedIndex = settled.findIndex(result => result.status === 'rejected')
  if (failedIndex !== -1) {
    await Promise.all(settled.map(async result => { if (result.status === 'fulfilled') await result.value.close() }))
    const reason = (settled[failedIndex] as PromiseRejectedResult).reason as unknown
    const provider = starts[failedIndex]![0]
    if (isAddressInUse(reason)) throw new PortInUseError(`the ${provider} stand-in`, host, at(provider).port)
    throw reason
  }
  const [kivra, kigo, klavi, sirGiving] = settled.map(result => (result as PromiseFulfilledResult<ProviderStandIn>).value) as [KivraStandIn, KigoStandIn, KlaviStandIn, SirGivingStandIn]
  const all: ProviderStandIn[] = [kivra, kigo, klavi, sirGiving]
  return {
    kivra,
    kigo,
    klavi,
    sirGiving,
    urls: { kivra: kivra.url, kigo: kigo.url, klavi: klavi.url, 'sir-giving': sirGiving.url },
    close: async () => { await Promise.all(all.map(async standIn => { await standIn.close() })) }
  }
}

/** The credentials with each stand-in provider's `base_url` replaced by where its stand-in listens. */
export function pointAtStandIns (credentials: readonly CredentialConfig[], urls: Readonly<Record<StandInProvider, string>>): CredentialConfig[] {
  return credentials.map(credential => {
    const url = (urls as Readonly<Record<string, string | undefined>>)[credential.provider]
    return url === undefined ? credential : { ...credential, base_url: url }
  })
}

/** SECRETS_FILE-shaped content of `file`, or {} when it cannot be read (the file source reports that itself). */
function readSecretsFile (file: string): Record<string, Record<string, string>> {
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'))
    return parsed !== null && typeof parsed === 'object' ? parsed as Record<string, Record<string, string>> : {}
  } catch {
    return {}
  }
}

/** Whether the embedded default serves with stand-ins: the example credentials, and never in production. */
export function servesWithStandIns (config: Config): boolean {
  return config.usingExampleCredentials && !config.production
}

/**
 * For the embedded default: starts the stand-ins on free loopback ports, accepting the secrets the broker
 * will read (SECRETS_FILE, else the example secrets), logs one line saying where they are, and returns
 * the configuration pointed at them. Call before buildApp, so the first proactive mint succeeds.
 */
export async function startStandInsForExampleCredentials (config: Config, log: Logger, options: Pick<EmbeddedStandInsOptions, 'lifetimes'> = {}): Promise<{ config: Config, standIns: EmbeddedStandIns }> {
  const standIns = await startEmbeddedStandIns({
    credentials: config.credentials,
    secrets: readSecretsFile(config.secretsFile ?? embeddedSecretsFile),
    lifetimes: options.lifetimes
  })
  log.warn({ standIns: standIns.urls }, 'provider stand-ins running on loopback for the example credentials (local fakes of Kivra, Kigo, Klavi and SIR Giving; not for production)')
  return { config: withCredentials(config, pointAtStandIns(config.credentials, standIns.urls)), standIns }
}

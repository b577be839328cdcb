import type { Logger } from 'pino'
import { createLogger } from '../../src/observability/logger.js'

/** Everything a logger wrote, kept in memory for assertions on what was (and was not) logged. */
export interface CapturedLogs {
  /** A pino logger with the production options (redaction, error serializer) writing into this capture. */
  readonly log: Logger
  /** Every line as written (JSON text, without the newline), oldest first. */
  readonly lines: string[]
  /** Every line parsed. */
  entries: () => Array<Record<string, unknown>>
  /** The `msg` of every line, in order. */
  messages: () => string[]
  /** All lines as one text, for "no secret or token appears in the logs" assertions. */
  text: () => string
}

/** Captures a logger's output in memory; `log` logs at `level` (default debug, so nothing hides). */
export function captureLogs (level = 'debug'): CapturedLogs {
  const lines: string[] = []
  const destination = { write: (chunk: string): void => { lines.push(...chunk.split('\n').filter(line => line !== '')) } }
  const entries = (): Array<Record<string, unknown>> => lines.map(line => JSON.parse(line) as Record<string, unknown>)
  return {
    log: createLogger(level, destination),
    lines,
    entries,
    messages: () => entries().map(entry => entry.msg as string),
    text: () => lines.join('\n')
  }
}

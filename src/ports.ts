import { createServer } from 'node:net'

/** A port someone else holds: reported as one line, never as a stack trace. */
export class PortInUseError extends Error {
  readonly what: string
  readonly host: string
  readonly port: number
  constructor (what: string, host: string, port: number) {
    super(`${what} cannot listen on ${host}:${port}: the port is already in use`)
    this.name = 'PortInUseError'
    this.what = what
    this.host = host
    this.port = port
  }
}

/**
 * Prints `credential-broker: <what> cannot listen on HOST:PORT: the port is already in use; <hint>` on
 * stderr and exits 1. Anything else is thrown on.
 */
export function exitOnPortInUse (err: unknown, hint: string): never {
  if (!(err instanceof PortInUseError)) throw err
  process.stderr.write(`credential-broker: ${err.message}; ${hint}\n`)
  process.exit(1)
}

/** True for the error listen() fails with when the address is taken. */
export function isAddressInUse (err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE'
}

/**
 * Binds `host:port` for a moment and lets it go, so a taken port is found before anything else starts
 * (and logs). Port 0 is always free. listen() may still lose a race afterwards; callers map that
 * EADDRINUSE to the same error.
 */
export async function assertPortFree (what: string, host: string, port: number): Promise<void> {
  if (port === 0) return
  await new Promise<void>((resolve, reject) => {
    const probe = createServer()
    probe.once('error', err => { reject(isAddressInUse(err) ? new PortInUseError(what, host, port) : err) })
    probe.listen({ port, host, exclusive: true }, () => { probe.close(() => { resolve() }) })
  })
}

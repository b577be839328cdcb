import { connect, type Socket } from 'node:net'

export interface RawAnswer {
  /** Everything the server sent before it closed the connection (or `waitMs` passed). */
  text: string
  status: number | undefined
  headers: Record<string, string>
  body: string
  /** The server closed the connection (rather than the wait ending). */
  closed: boolean
  /** A socket error seen (e.g. ECONNRESET), if any. */
  error: string | undefined
}

/** Splits a raw HTTP/1.1 answer into status, headers (lower-cased names) and body. */
export function parseRawAnswer (text: string): Pick<RawAnswer, 'status' | 'headers' | 'body'> {
  const split = text.indexOf('\r\n\r\n')
  const head = split === -1 ? text : text.slice(0, split)
  const [statusLine = '', ...lines] = head.split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1]
  return { status: status === undefined ? undefined : Number(status), headers, body: split === -1 ? '' : text.slice(split + 4) }
}

/**
 * Opens a TCP connection, lets `write` send bytes (at once or slowly), and collects what comes back until
 * the server closes the connection, a whole answer with a Content-Length has arrived (unless `untilClose`),
 * or `waitMs` passes. For requests no HTTP client library would send.
 */
export async function rawExchange (port: number, write: string | ((socket: Socket) => void), waitMs = 5000, options: { untilClose?: boolean } = {}): Promise<RawAnswer> {
  return await new Promise(resolve => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    let error: string | undefined
    let closed = false
    const finish = (): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve({ text, ...parseRawAnswer(text), closed, error })
    }
    const timer = setTimeout(finish, waitMs)
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      text += chunk
      // A whole answer with a Content-Length is complete: no need to wait for a keep-alive socket to close.
      const { headers, body } = parseRawAnswer(text)
      const length = Number(headers['content-length'])
      if (options.untilClose !== true && Number.isInteger(length) && Buffer.byteLength(body, 'latin1') >= length) finish()
    })
    socket.on('error', (err: NodeJS.ErrnoException) => { error = err.code ?? err.message })
    socket.on('close', () => { closed = true; finish() })
    socket.on('connect', () => {
      if (typeof write === 'string') socket.write(write)
      else write(socket)
    })
  })
}

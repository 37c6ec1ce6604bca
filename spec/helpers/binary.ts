/** A supertest body parser that keeps the body as raw bytes (blobs are not text). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function binary(res: any, callback: (err: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => callback(null, Buffer.concat(chunks)));
}

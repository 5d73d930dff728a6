/**
 * A real S3-protocol server for the tests: s3rver (an npm package, run here
 * in the test's process on 127.0.0.1), with a bucket made for them. Its keys
 * are its defaults, S3RVER/S3RVER.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
// @ts-expect-error -- s3rver ships no types; its constructor and run()/close() are all that is used.
import S3rver from "s3rver";

export interface S3Server {
  readonly endpoint: string;
  readonly bucket: string;
  /** The variables a gateway needs to keep its images there. */
  readonly env: Record<string, string>;
  /** The bucket's keys now. */
  keys(): Promise<string[]>;
  close(): Promise<void>;
}

interface S3rverInstance {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
}

export async function startS3Server(bucket = "images"): Promise<S3Server> {
  const directory = mkdtempSync(path.join(tmpdir(), "s3rver-"));
  const server = new (S3rver as new (options: Record<string, unknown>) => S3rverInstance)({ port: 0, address: "127.0.0.1", silent: true, directory });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    endpoint,
    bucket,
    env: { IMAGE_STORE: "s3", S3_BUCKET: bucket, S3_ENDPOINT: endpoint, S3_FORCE_PATH_STYLE: "true", AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_REGION: "us-east-1" },
    keys: async () => ((await client.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? []).map((object) => object.Key ?? ""),
    close: async () => {
      client.destroy();
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

/**
 * One repository's links (distribution `linkedblobstore.go`, `tagstore.go`): a repository "has" a
 * blob only through its `_layers` link and a manifest only through its revision link. Link files
 * hold `<alg>:<hex>` with no newline.
 */
import { parseDigest, type Digest } from '../distribution/digest.js';
import { isValidTag } from '../distribution/reference.js';
import type { StorageDriver } from './driver.js';
import { PathNotFoundError } from './driver.js';
import { listOrEmpty } from './blob-store.js';
import {
  layerLinkPath,
  layersDir,
  manifestRevisionLinkPath,
  manifestsDir,
  repositoryDir,
  revisionsDir,
  tagCurrentLinkPath,
  tagDir,
  tagIndexLinkPath,
  tagsDir,
} from './paths.js';

/** The links of one repository. */
export class RepositoryStore {
  constructor(
    private readonly driver: StorageDriver,
    readonly name: string,
  ) {
    repositoryDir(name);
  }

  hasLayer(d: Digest): Promise<boolean> {
    return this.linkIs(layerLinkPath(this.name, d), d);
  }
  linkLayer(d: Digest): Promise<void> {
    return this.driver.putContent(layerLinkPath(this.name, d), d.value);
  }
  async unlinkLayer(d: Digest): Promise<void> {
    await this.driver.delete(parent(layerLinkPath(this.name, d)));
  }
  listLayers(): Promise<Digest[]> {
    return this.listLinked(
      (alg) => layersDir(this.name, alg),
      (d) => layerLinkPath(this.name, d),
    );
  }

  hasRevision(d: Digest): Promise<boolean> {
    return this.linkIs(manifestRevisionLinkPath(this.name, d), d);
  }
  linkRevision(d: Digest): Promise<void> {
    return this.driver.putContent(manifestRevisionLinkPath(this.name, d), d.value);
  }
  async unlinkRevision(d: Digest): Promise<void> {
    await this.driver.delete(parent(manifestRevisionLinkPath(this.name, d)));
  }
  listRevisions(): Promise<Digest[]> {
    return this.listLinked(
      (alg) => revisionsDir(this.name, alg),
      (d) => manifestRevisionLinkPath(this.name, d),
    );
  }
  /** When the revision link was written (the first pull of the manifest here); undefined without one. */
  async linkedAt(d: Digest): Promise<Date | undefined> {
    return (await this.driver.stat(manifestRevisionLinkPath(this.name, d)))?.modTime;
  }

  /** The digest a tag points at; undefined when the tag or a valid link is missing. */
  async resolveTag(tag: string): Promise<Digest | undefined> {
    return this.readLink(tagCurrentLinkPath(this.name, tag));
  }

  /** Points `tag` at `d`: the index entry first, then `current`, as distribution's tag store. */
  async tag(tag: string, d: Digest): Promise<void> {
    await this.indexTag(tag, d);
    await this.pointTag(tag, d);
  }

  /** The first half of `tag`: the tag's index entry for `d`. */
  protected indexTag(tag: string, d: Digest): Promise<void> {
    return this.driver.putContent(tagIndexLinkPath(this.name, tag, d), d.value);
  }

  /** The second half of `tag`: `current`, once the index entry is written. */
  protected pointTag(tag: string, d: Digest): Promise<void> {
    return this.driver.putContent(tagCurrentLinkPath(this.name, tag), d.value);
  }

  async untag(tag: string): Promise<void> {
    await this.driver.delete(tagDir(this.name, tag));
  }

  /** The repository's tags, sorted. */
  async listTags(): Promise<string[]> {
    const names = await listOrEmpty(this.driver, tagsDir(this.name));
    const tags: string[] = [];
    for (const t of names) {
      try {
        if (await this.resolveTag(t)) tags.push(t);
      } catch {
        // A directory whose name is not a valid tag is not a tag.
      }
    }
    return tags.sort();
  }

  /**
   * The names of the repository's tag directories, sorted, as distribution's tag store lists them:
   * one directory listing, no link read (a 10,000-tag repository costs one call, not 10,000).
   */
  async tagNames(): Promise<string[]> {
    return (await listOrEmpty(this.driver, tagsDir(this.name))).filter((t) => isValidTag(t)).sort();
  }

  /**
   * The digests of the revision directories, without reading their links (one listing per
   * algorithm; sorted within each, sha256 first, the order garbage-collect prints them in).
   */
  revisionNames(): Promise<string[]> {
    return this.linkedNames((alg) => revisionsDir(this.name, alg));
  }

  /** The digests of the layer link directories, without reading their links. */
  layerNames(): Promise<string[]> {
    return this.linkedNames((alg) => layersDir(this.name, alg));
  }

  private async linkedNames(dirFor: (alg: string) => string): Promise<string[]> {
    const names: string[] = [];
    for (const alg of ['sha256', 'sha384', 'sha512']) for (const hex of (await listOrEmpty(this.driver, dirFor(alg))).sort()) names.push(`${alg}:${hex}`);
    return names;
  }

  /** The tags currently pointing at `d` (each tag's link read once). */
  async tagsFor(d: Digest): Promise<string[]> {
    const result: string[] = [];
    for (const t of await listOrEmpty(this.driver, tagsDir(this.name))) {
      try {
        if ((await this.resolveTag(t))?.value === d.value) result.push(t);
      } catch {
        // A directory whose name is not a valid tag is not a tag.
      }
    }
    return result.sort();
  }

  /** True when the repository has any manifest links. */
  async exists(): Promise<boolean> {
    return (await this.driver.stat(manifestsDir(this.name))) !== undefined;
  }

  async delete(): Promise<void> {
    await this.driver.delete(repositoryDir(this.name));
  }

  private async linkIs(path: string, d: Digest): Promise<boolean> {
    return (await this.readLink(path))?.value === d.value;
  }

  private async readLink(path: string): Promise<Digest | undefined> {
    try {
      return parseDigest((await this.driver.getContent(path)).toString('utf8').trim());
    } catch (err) {
      if (err instanceof PathNotFoundError) return undefined;
      if ((err as NodeJS.ErrnoException).code === 'EISDIR' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw err;
    }
  }

  private async listLinked(dirFor: (alg: string) => string, linkOf: (d: Digest) => string): Promise<Digest[]> {
    const found: Digest[] = [];
    for (const alg of ['sha256', 'sha384', 'sha512']) {
      for (const hex of await listOrEmpty(this.driver, dirFor(alg))) {
        const d = parseDigest(`${alg}:${hex}`);
        if (d && (await this.readLink(linkOf(d)))?.value === d.value) found.push(d);
      }
    }
    return found;
  }
}

function parent(path: string): string {
  return path.slice(0, path.lastIndexOf('/'));
}

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/**
 * Temporary folders for one test file: `make(prefix)` creates a fresh folder under the system's temporary
 * folder, `removeAll()` deletes every folder made so far (call it in `afterAll`), so test runs leave nothing
 * behind.
 *
 * @example
 * const temps = new TemporaryFolders();
 * afterAll(() => temps.removeAll());
 * const dir = temps.make('my-plugin-');
 */
export class TemporaryFolders {
  private readonly made: string[] = [];

  /** Creates and returns a new folder whose name starts with `prefix`. */
  make(prefix: string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    this.made.push(dir);
    return dir;
  }

  /** Deletes every folder made so far, with its contents. */
  removeAll(): void {
    for (const dir of this.made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  }
}

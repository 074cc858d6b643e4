"""What can still be read of a damaged MCAP file, record by record, with the ``mcap`` library.

A recording killed mid-write has no summary section and no footer, and a file with a corrupt
chunk stops ``rosbags`` at that chunk. :class:`McapRecovery` reads such files front to back
with :class:`mcap.stream_reader.StreamReader` (which needs neither summary nor footer), hands
each chunk to :func:`mcap.stream_reader.breakup_chunk` itself (decompression and CRC check by
the library) and catches the library's errors per chunk: a chunk that cannot be decompressed or
fails its CRC is skipped, the message index records that follow it tell which topics lost how
many messages, and later chunks are still read. A file that ends inside a record (truncated)
yields everything before the cut. Every problem becomes a :class:`BagIssue`.

Message types come from the file's own ``ros2msg`` schema records, as
``rosbags.highlevel.AnyReader`` takes them from a healthy bag.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Optional

from depth_node.offline.records import BagIssue, BagMessage

_MAGIC_BYTES = 8  # length of the MCAP magic at both ends of a file


def bag_metadata(path: Path) -> dict:
    """``rosbag2_bagfile_information`` of a bag folder's metadata.yaml ({} when unreadable)."""
    meta = Path(path) / 'metadata.yaml'
    if not meta.is_file():
        return {}
    try:
        import yaml
        info = yaml.safe_load(meta.read_text())['rosbag2_bagfile_information']
        return info if isinstance(info, dict) else {}
    except Exception:  # a damaged metadata.yaml is one more thing to do without
        return {}


def declared_topics(path: Path) -> dict[str, tuple[str, int]]:
    """Topic -> (type, message count) as a bag folder's metadata.yaml declares them."""
    out = {}
    for t in bag_metadata(path).get('topics_with_message_count') or []:
        try:
            meta = t['topic_metadata']
            out[str(meta['name'])] = (str(meta['type']), int(t['message_count']))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def mcap_files(path: Path) -> list[Path]:
    """The MCAP files of a bag: the file itself, or those of a bag folder, in order."""
    path = Path(path)
    if path.is_file():
        return [path] if path.suffix == '.mcap' else []
    if not path.is_dir():
        return []
    named = [path / str(r) for r in bag_metadata(path).get('relative_file_paths') or []]
    named = [f for f in named if f.suffix == '.mcap' and f.is_file()]
    return named or sorted(path.glob('*.mcap'))


def types_of_schema(encoding: str, name: str, text: str) -> dict:
    """rosbags type definitions of one MCAP schema record: ``ros2msg`` (what rosbag2 writes for
    message types); {} for other encodings, whose types come from the default type store."""
    if encoding != 'ros2msg':
        return {}
    from rosbags.typesys import get_types_from_msg
    return dict(get_types_from_msg(text, name))


class McapRecovery:
    """Messages of (possibly damaged) MCAP files, in file order, time order within a chunk.

    ``wanted``: topics to return (None: all). Problems are appended to ``issues``.
    :attr:`typestore` holds the types of the schemas read so far.
    """

    def __init__(self, bag: str, issues: list[BagIssue],
                 wanted: Optional[set[str]] = None) -> None:
        from rosbags.typesys import get_typestore, Stores
        self.bag = bag
        self.issues = issues
        self.wanted = wanted
        self.typestore: Any = get_typestore(Stores.EMPTY)
        self.schemas: dict[int, str] = {}  # id -> type name
        self.channels: dict[int, tuple[str, str]] = {}  # id -> (topic, type name)
        self._unknown: set[int] = set()

    def _issue(self, topic: Optional[str], message: str) -> None:
        self.issues.append(BagIssue(self.bag, topic, message))

    def messages(self, file: Path) -> Iterator[BagMessage]:
        """The wanted messages of one MCAP file that can be read."""
        from mcap.exceptions import EndOfFile, InvalidMagic
        from mcap.records import Chunk, DataEnd, Footer, MessageIndex
        from mcap.stream_reader import breakup_chunk, StreamReader

        file = Path(file)
        size = file.stat().st_size
        if size < _MAGIC_BYTES:
            self._issue(None, f'{file.name} is empty or shorter than the MCAP magic '
                              f'({size} bytes)')
            return
        lost: Optional[dict] = None  # the chunk being skipped, until its message index ends
        with open(file, 'rb') as fh:
            # A record longer than the file is damage, not a reason to allocate gigabytes.
            records = iter(StreamReader(fh, emit_chunks=True, record_size_limit=size).records)
            while True:
                pos = fh.tell()  # the reader is lazy: the next record starts here
                try:
                    record = next(records)
                except StopIteration:
                    break
                except InvalidMagic:
                    self._issue(None, f'{file.name} is not an MCAP file (bad magic)')
                    break
                except EndOfFile:
                    if pos >= size:
                        self._issue(None, f'{file.name} ends at byte {size} without an MCAP '
                                          'footer: the recording was cut off (read what was '
                                          'there)')
                    else:
                        self._issue(None, f'{file.name} ends inside the record at byte {pos} '
                                          f'({size - pos} bytes of it present): the file was '
                                          'truncated; later messages are missing')
                    break
                except Exception as exc:  # the library raises McapError, struct.error, ...
                    self._issue(None, f'{file.name} is unreadable from byte {pos} on '
                                      f'({type(exc).__name__}: {exc}); later messages are '
                                      'missing')
                    break
                if lost is not None and not isinstance(record, MessageIndex):
                    self._report_lost(lost)
                    lost = None
                if isinstance(record, (DataEnd, Footer)):  # the summary section follows
                    break
                if isinstance(record, Chunk):
                    try:
                        inner = breakup_chunk(record, validate_crc=True)
                    except Exception as exc:  # zstd, lz4, CRC and record errors alike
                        lost = {'where': f'chunk at byte {pos} of {file.name} (log time '
                                         f'{record.message_start_time * 1e-9:.3f}-'
                                         f'{record.message_end_time * 1e-9:.3f} s)',
                                'error': f'{type(exc).__name__}: {exc}', 'indexed': Counter()}
                        continue
                    got = [m for m in map(self._take, inner) if m is not None]
                    yield from sorted(got, key=lambda m: m.log_ns)
                elif isinstance(record, MessageIndex):
                    if lost is not None:
                        topic = self.channels.get(record.channel_id,
                                                  (f'<channel {record.channel_id}>', ''))[0]
                        lost['indexed'][topic] += len(record.records)
                else:
                    message = self._take(record)
                    if message is not None:
                        yield message
        if lost is not None:
            self._report_lost(lost)

    def _take(self, record: Any) -> Optional[BagMessage]:
        """Schema and channel records update the tables; a wanted message comes back."""
        from mcap.records import Channel, Message, Schema
        if isinstance(record, Schema):
            self.schemas[record.id] = record.name
            self._register(record)
        elif isinstance(record, Channel):
            self.channels[record.id] = (record.topic, self.schemas.get(record.schema_id, ''))
        elif isinstance(record, Message):
            if record.channel_id not in self.channels:
                if record.channel_id not in self._unknown:
                    self._unknown.add(record.channel_id)
                    self._issue(None, f'messages on channel {record.channel_id}, which is '
                                      'never defined (its channel record is lost), are skipped')
                return None
            topic, msgtype = self.channels[record.channel_id]
            if self.wanted is None or topic in self.wanted:
                return BagMessage(topic, msgtype, int(record.log_time), record.data)
        return None

    def _register(self, schema: Any) -> None:
        try:
            typs = types_of_schema(schema.encoding, schema.name, bytes(schema.data).decode())
            self.typestore.register(typs)
        except Exception as exc:  # rosbags' parsers raise their own types
            self._issue(None, f'the definition of {schema.name} in the file is unreadable '
                              f'({type(exc).__name__}: {exc}); the default types are used')

    def _report_lost(self, lost: dict) -> None:
        indexed = {t: n for t, n in lost['indexed'].items() if n > 0
                   and (self.wanted is None or t in self.wanted or t.startswith('<'))}
        if not lost['indexed']:
            self._issue(None, f"{lost['where']} is unreadable ({lost['error']}); its "
                              'messages are lost')
        for topic, n in sorted(indexed.items()):
            self._issue(topic, f"{n} messages lost: {lost['where']} is unreadable "
                               f"({lost['error']})")


__all__ = ['bag_metadata', 'declared_topics', 'mcap_files', 'McapRecovery', 'types_of_schema']

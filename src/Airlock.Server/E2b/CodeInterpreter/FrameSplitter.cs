using System.Globalization;
using System.Text;

namespace Airlock.Server.E2b.CodeInterpreter;

/// <summary>
/// Splits one output pipe of the interpreter driver into user text and driver frames. A frame is
/// <c>&lt;marker&gt;&lt;execution id&gt; &lt;payload&gt;\n</c>; the marker is a per-process secret, so
/// anything else the cell (or a subprocess) prints is user output, whatever it contains. Bytes are
/// decoded statefully, so a UTF-8 character or a frame split across reads comes out whole.
/// </summary>
internal sealed class FrameSplitter(string marker)
{
    private readonly Decoder _decoder = new UTF8Encoding(false).GetDecoder();
    private readonly StringBuilder _pending = new();

    internal readonly record struct Piece(string? Text, long Id, string? Payload);

    public void Push(ReadOnlySpan<byte> bytes, List<Piece> output)
    {
        var chars = new char[_decoder.GetCharCount(bytes, flush: false)];
        _decoder.GetChars(bytes, chars, flush: false);
        _pending.Append(chars);

        while (_pending.Length > 0)
        {
            var text = _pending.ToString();
            var at = text.IndexOf(marker, StringComparison.Ordinal);
            if (at < 0)
            {
                // Hold back only a tail that could be the start of a marker split across reads.
                var keep = PartialMarkerSuffix(text);
                if (text.Length > keep)
                {
                    output.Add(new Piece(text[..^keep], 0, null));
                }

                _pending.Clear().Append(text, text.Length - keep, keep);
                return;
            }

            if (at > 0)
            {
                output.Add(new Piece(text[..at], 0, null));
            }

            var newline = text.IndexOf('\n', at + marker.Length);
            if (newline < 0)
            {
                _pending.Clear().Append(text, at, text.Length - at);
                return;
            }

            var frame = text.AsSpan(at + marker.Length, newline - at - marker.Length);
            var space = frame.IndexOf(' ');
            if (space > 0 && long.TryParse(frame[..space], NumberStyles.None, CultureInfo.InvariantCulture, out var id))
            {
                output.Add(new Piece(null, id, frame[(space + 1)..].ToString()));
            }

            _pending.Clear().Append(text, newline + 1, text.Length - newline - 1);
        }
    }

    private int PartialMarkerSuffix(string text)
    {
        for (var length = Math.Min(marker.Length - 1, text.Length); length > 0; length--)
        {
            if (text.AsSpan(text.Length - length).SequenceEqual(marker.AsSpan(0, length)))
            {
                return length;
            }
        }

        return 0;
    }
}

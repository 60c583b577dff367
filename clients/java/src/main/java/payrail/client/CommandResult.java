package payrail.client;

/** One command's outcome: its status ({@code ok} or why it was refused) and any detail. */
public record CommandResult(Status status, Detail detail) {
    /** Bytes of the smallest result on the wire. */
    static final int WIRE_BYTES_MIN = 6;

    public boolean isOk() {
        return status == Status.OK;
    }

    static CommandResult decode(BodyReader in) {
        Status status = in.status("result status");
        return new CommandResult(status, Detail.decode(in));
    }

    @Override
    public String toString() {
        return detail instanceof Detail.None ? status.wireName() : status.wireName() + " " + detail;
    }
}

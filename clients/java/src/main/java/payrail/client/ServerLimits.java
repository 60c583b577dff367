package payrail.client;

/** The limits the server announced in its Welcome (u32 values). */
public record ServerLimits(int frameBytesMax, int batchCommandsMax, int inflightMax) {}

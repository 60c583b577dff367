package payrail.client;

/** The answer to SetRiskPolicy: ok and the BLAKE3 digest of the policy now in force, or why not (digest zeros). */
public record RiskPolicySet(Status status, byte[] digest) {}

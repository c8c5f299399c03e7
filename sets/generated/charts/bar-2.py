import matplotlib.pyplot as plt

labels = ["South", "Coast", "East", "North"]
values = [57, 34, 58, 16]
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.bar(labels, values, color="#4C72B0")
ax.set_title("Units sold by region")
ax.set_ylabel("Units")
plt.tight_layout()
plt.show()
